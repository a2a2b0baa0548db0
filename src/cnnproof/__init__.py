"""cnnproof: a formal verifier for exact CNN constructions.

The Python API in one place (the stages in order)::

    task = cnnproof.load_task("faces.toml")        # task
    net = cnnproof.build_network(task)             # task -> network
    verdict = cnnproof.prove(task, net)            # network -> verdict (Proved/Refuted/Unknown)
"""

__version__ = "0.1.0"

from cnnproof.constructions.task import Task, load_task, task_from_toml  # noqa: E402
from cnnproof.constructions.task_to_network import build_network  # noqa: E402
from cnnproof.verifier.network import Network, load_network, save_network  # noqa: E402

__all__ = ["Task", "Network", "load_task", "task_from_toml", "build_network", "load_network", "save_network", "__version__"]
