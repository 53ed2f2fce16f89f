"""Imports only go down: the lower layers never import the engine, the CLI or the report.

Every ``import`` in the source is read with ``ast`` (also those inside functions and
``if TYPE_CHECKING:`` blocks, relative ones, and ``importlib.import_module("...")``
with a literal name), so a lazy import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import emodistill

PACKAGE = Path(emodistill.__file__).resolve().parent
#: layers that must stay below the engine (they are what the engine is made of)
LOWER = ("models", "distill", "data", "metrics")
#: what they must never import
UPPER = ("emodistill.training", "emodistill.cli", "emodistill.report")


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_names(path: Path, module: str | None = None) -> list[tuple[int, str]]:
    """``(line, absolute module name)`` of every import in the file at ``path``.

    ``module`` is the file's dotted name (default: from its place in the package).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            # ``from emodistill import training`` names the module in the alias
            found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) in ("import_module", "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def _upward(name: str) -> bool:
    return any(name == u or name.startswith(u + ".") for u in UPPER)


@pytest.mark.parametrize("layer", LOWER)
def test_lower_layers_never_import_the_engine_cli_or_report(layer):
    files = sorted((PACKAGE / layer).rglob("*.py"))
    assert files, f"no modules found under {PACKAGE / layer}"
    bad = [f"{f.relative_to(PACKAGE)}:{line} imports {name}"
           for f in files for line, name in imported_names(f) if _upward(name)]
    assert not bad, "imports must only go down:\n" + "\n".join(bad)


def test_the_walker_sees_lazy_relative_and_dynamic_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from emodistill.training.run import Prepared\n"
        "def f():\n    from ..training import lit\n    import emodistill.cli\n"
        "    import importlib\n    importlib.import_module('emodistill.report.html')\n"
        "from emodistill import training\n"
        "from emodistill.models.base import MERModel\n"
        "from .base import Head\n"
    )
    names = [n for _, n in imported_names(probe, "emodistill.models.probe")]
    assert sorted(n for n in names if _upward(n)) == sorted([
        "emodistill.training.run", "emodistill.training.run.Prepared",
        "emodistill.training", "emodistill.training.lit", "emodistill.cli",
        "emodistill.report.html", "emodistill.training",
    ])
    assert {"emodistill.models.base", "emodistill.models.base.Head"} <= set(names)


#: the only module of ``features`` the data layer may use: the local sentence encoder (its
#: model path for tokenising, and the encoder on a text-feature cache miss); no loader lives
#: in ``features`` (formats are in ``data/formats``)
DATA_MAY_USE_FROM_FEATURES = ("emodistill.features.text",)


def test_data_uses_only_the_text_encoder_of_features():
    files = sorted((PACKAGE / "data").rglob("*.py"))
    def allowed(name: str) -> bool:
        return any(name == ok or name.startswith(ok + ".") for ok in DATA_MAY_USE_FROM_FEATURES)

    bad = [f"{f.relative_to(PACKAGE)}:{line} imports {name}"
           for f in files for line, name in imported_names(f)
           if (name == "emodistill.features" or name.startswith("emodistill.features."))
           and not allowed(name)]
    assert not bad, ("data must not import features (loaders live in data/formats):\n"
                     + "\n".join(bad))


def test_every_format_module_registers_itself():
    from emodistill.data.registry import DATASETS

    formats = [p.stem for p in sorted((PACKAGE / "data" / "formats").glob("*.py"))
               if not p.stem.startswith("_")]
    assert formats, "no format modules found"
    registered_by = {getattr(DATASETS.get(n), "__module__", "") for n in DATASETS.names()}
    missing = [m for m in formats if f"emodistill.data.formats.{m}" not in registered_by]
    assert not missing, f"format modules that register no dataset: {missing}"
    assert not [n for n in DATASETS.names()
                if not getattr(DATASETS.get(n), "__module__", "").startswith(
                    "emodistill.data.formats.")], "datasets registered outside data/formats"
