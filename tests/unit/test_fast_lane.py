"""The fast lane stays fast and self-contained.

``pytest tests/unit`` trains nothing through the engine (those tests live in
tests/integration), and no test module imports another one: shared code is in
``tests/helpers`` (importable under every import mode) or in a conftest fixture.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
#: engine entry points that train (a unit test may build, prepare or refuse, not fit)
TRAINS = {"run_experiment", "run_parallel", "run_benchmark", "run_sweep", "run_ray_sweep"}


def _calls(tree: ast.AST) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            out.add(f.id if isinstance(f, ast.Name) else getattr(f, "attr", ""))
    return out


def _test_modules() -> set[str]:
    return {p.stem for p in TESTS.rglob("test_*.py")} | {"conftest"}


def test_unit_tests_do_not_train_through_the_engine():
    bad = [f"{p.relative_to(TESTS)} calls {sorted(_calls(ast.parse(p.read_text())) & TRAINS)}"
           for p in sorted((TESTS / "unit").rglob("*.py"))
           if _calls(ast.parse(p.read_text())) & TRAINS]
    assert not bad, "move these tests to tests/integration:\n" + "\n".join(bad)


def _imports_of_tests(path: Path, names: set[str]) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        out += [f"{path.name}:{node.lineno} imports {m}" for m in mods
                if m.split(".")[0] in names]
    return out


def test_no_test_module_imports_another():
    names = _test_modules()
    bad = [b for p in sorted(TESTS.rglob("*.py")) for b in _imports_of_tests(p, names)]
    assert not bad, "share code through tests/helpers or a fixture:\n" + "\n".join(bad)


def test_the_checks_see_what_they_look_for(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from test_mkd import x\nimport conftest\nfrom helpers.mkd import y\n"
                     "def f():\n    res = m.run_experiment(cfg)\n")
    assert "run_experiment" in _calls(ast.parse(probe.read_text()))
    assert _imports_of_tests(probe, _test_modules()) == [
        "probe.py:1 imports test_mkd", "probe.py:2 imports conftest"]
