"""The dependencies declared in pyproject.toml are the ones the code imports (issue 14 item 12).

Every third-party import of src/, verifier/ and constructions/ is declared, either as a core
dependency or in an extra; an import of a package that only an extra brings sits inside a
function and is guarded (``cnnproof.extras.require``/``optional`` or ``try ... except
ImportError``), so that the core install never fails on it; every core dependency is imported
somewhere (sympy was declared and imported nowhere); what the tests import is in the test extra.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CODE = ("src", "verifier", "constructions")
# import name -> distribution name, where they differ
DIST = {"PIL": "pillow", "z3": "z3-solver"}
LOCAL_TEST_MODULES = {p.stem for p in (ROOT / "tests").glob("*.py")}  # tests/ is on sys.path


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    extras = {k: {_name(r) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


def _dist(module: str) -> str:
    return DIST.get(module, module).lower().replace("_", "-")


def _third_party(module: str, local: set[str] = frozenset()) -> bool:
    return module not in sys.stdlib_module_names and module != "cnnproof" and module not in local


class _Imports(ast.NodeVisitor):
    """(top-level module, line, inside a function, guarded) for every import of a file."""

    def __init__(self):
        self.found: list[tuple[str, int, bool, bool]] = []
        self.func: list[ast.AST] = []
        self.tries: list[ast.Try] = []

    def _required_here(self, module: str) -> bool:
        for fn in self.func:
            for node in ast.walk(fn):
                if (isinstance(node, ast.Call) and isinstance(node.func, (ast.Name, ast.Attribute))
                        and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("require", "optional")
                        and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == module):
                    return True
        return False

    def _guarded(self, module: str) -> bool:
        for t in self.tries:
            for h in t.handlers:
                names = [h.type] if not isinstance(h.type, ast.Tuple) else list(h.type.elts)
                if any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError") for n in names):
                    return True
        return self._required_here(module)

    def _add(self, module: str | None, node: ast.AST, level: int = 0) -> None:
        if module and level == 0:
            top = module.split(".")[0]
            self.found.append((top, node.lineno, bool(self.func), self._guarded(top)))

    def visit_FunctionDef(self, node):
        self.func.append(node)
        self.generic_visit(node)
        self.func.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Try(self, node):
        self.tries.append(node)
        for n in node.body:
            self.visit(n)
        self.tries.pop()
        for n in node.handlers + node.orelse + node.finalbody:
            self.visit(n)

    def visit_If(self, node):  # `if TYPE_CHECKING:` imports never run
        t = node.test
        if (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"):
            for n in node.orelse:
                self.visit(n)
            return
        self.generic_visit(node)

    def visit_Import(self, node):
        for a in node.names:
            self._add(a.name, node)

    def visit_ImportFrom(self, node):
        self._add(node.module, node, node.level)


def _imports(folders, local=frozenset()):
    out = []
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            v = _Imports()
            v.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
            out += [(path.relative_to(ROOT).as_posix(), *f) for f in v.found if _third_party(f[0], local)]
    return out


def test_every_import_is_declared_and_optional_ones_are_guarded():
    core, extras = _declared()
    in_extras = set().union(*extras.values())
    problems = []
    for file, module, line, in_function, guarded in _imports(CODE):
        dist = _dist(module)
        if dist in core:
            continue
        if dist not in in_extras:
            problems.append(f"{file}:{line}: {module} ({dist}) is declared neither as a dependency nor in an extra")
        elif not (in_function and guarded):
            problems.append(f"{file}:{line}: {module} comes only with an extra; import it inside a function "
                            "through cnnproof.extras.require/optional (or try/except ImportError)")
    assert problems == []


def test_every_core_dependency_is_imported():
    core, _ = _declared()
    used = {_dist(m) for _, m, *_ in _imports(CODE)}
    assert core - used == set(), "declared but imported nowhere"
    assert "sympy" not in core


def test_the_extras_table_matches_pyproject():
    from cnnproof.extras import EXTRAS

    core, extras = _declared()
    for module, extra in EXTRAS.items():
        assert _dist(module) in extras[extra], (module, extra)
        assert _dist(module) not in core, module
    optional_imports = {m for _, m, *_ in _imports(CODE) if _dist(m) not in core}
    assert optional_imports <= set(EXTRAS), optional_imports - set(EXTRAS)


def test_the_test_extra_brings_what_the_tests_import():
    core, extras = _declared()
    have = core | extras["test"]
    missing = {(f, m) for f, m, *_ in _imports(["tests"], LOCAL_TEST_MODULES) if _dist(m) not in have}
    # maraboupy: tests/test_marabou*.py skip without it (the crosscheck extra, CI installs it)
    assert {m for _, m in missing} <= {"maraboupy"}, missing


def test_a_missing_extra_names_the_extra_to_install(monkeypatch):
    from cnnproof.extras import MissingExtra, optional, require

    monkeypatch.setitem(sys.modules, "maraboupy", None)  # `import maraboupy` raises ImportError
    with pytest.raises(MissingExtra, match=r"pip install 'cnnproof\[crosscheck\]'") as e:
        require("maraboupy", "running Marabou on the queries")
    assert isinstance(e.value, ImportError) and e.value.exit_code == 2
    assert optional("maraboupy") is None
    from cnnproof.verifier.vnnlib import marabou_network

    with pytest.raises(MissingExtra, match="running Marabou on the queries needs maraboupy"):
        marabou_network("x.onnx")


def test_without_onnxruntime_a_counterexample_says_what_is_not_shown(monkeypatch, capsys):
    import numpy as np

    from cnnproof.onnx_commands import onnxruntime_logits

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert onnxruntime_logits("m.onnx", np.zeros((1, 2, 2), dtype=object)) is None
    err = capsys.readouterr().err
    assert "onnxruntime is not installed" in err and "cnnproof[crosscheck]" in err
