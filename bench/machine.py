"""What every bench table records about the run: the machine, the software and the commit.

Shared by the bench scripts (run as ``python bench/X.py``, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine_facts(packages: tuple[str, ...] = ()) -> dict:
    """Python, platform, cores (and the usable ones), CPU model, memory, z3, numpy, cnnproof,
    the git commit and whether tracked files differ from it; plus the versions of ``packages``
    (distribution names, e.g. ``"maraboupy"``), "not installed" where absent."""
    facts: dict = {"python": platform.python_version(), "platform": f"{platform.system()} {platform.machine()}",
                   "cores": os.cpu_count()}
    try:
        facts["usable_cores"] = len(os.sched_getaffinity(0))
    except AttributeError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                facts["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                facts["memory_gb"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import z3

        facts["z3"] = z3.get_version_string()
    except ImportError:
        facts["z3"] = "not installed"
    import numpy

    facts["numpy"] = numpy.__version__
    try:
        from cnnproof import __version__

        facts["cnnproof"] = __version__
    except ImportError:
        facts["cnnproof"] = "?"
    for pkg in packages:
        try:
            facts[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            facts[pkg] = "not installed"
    git = ["git", "-C", str(REPO)]
    try:
        facts["commit"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                         check=True).stdout.strip()
        facts["dirty"] = bool(subprocess.run(git + ["status", "--porcelain", "--untracked-files=no"],
                                             capture_output=True, text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        facts["commit"] = "?"
    return facts
