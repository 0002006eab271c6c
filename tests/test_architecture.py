"""The house's arrows (docs/architecture.md), checked on the source: which room may import which."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "betavae"


def imported_modules(path: Path, root: Path = PACKAGE.parent) -> set[str]:
    """Every module ``path`` (under ``root``) imports, at any depth (inside functions too), as absolute names."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..callbacks import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def sources(*rooms: str) -> list[Path]:
    files: list[Path] = []
    for room in rooms:
        target = PACKAGE / room
        files += sorted(target.rglob("*.py")) if target.is_dir() else [target]
    return files


def offending(files: list[Path], forbidden: str, root: Path = PACKAGE.parent) -> dict[str, list[str]]:
    """The files that import ``forbidden`` or a module under it, with what they import."""
    hits = {
        str(f.relative_to(root)): sorted(
            m for m in imported_modules(f, root) if m == forbidden or m.startswith(forbidden + ".")
        )
        for f in files
    }
    return {f: m for f, m in hits.items() if m}


def test_the_scanner_sees_absolute_relative_and_nested_imports(tmp_path):
    source = tmp_path / "betavae" / "evaluation" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "from betavae.callbacks import FID\n"
        "def f():\n    from ..callbacks.traversal import x\n    import betavae.callbacks.fid\n"
        "from betavae.callbacks_like import y\n"  # a name that only starts alike is not the room
    )
    assert offending([source], "betavae.callbacks", tmp_path) == {
        "betavae/evaluation/probe.py": [
            "betavae.callbacks",
            "betavae.callbacks.FID",
            "betavae.callbacks.fid",
            "betavae.callbacks.traversal",
            "betavae.callbacks.traversal.x",
        ]
    }


@pytest.mark.parametrize(
    ("rooms", "forbidden"),
    [
        (("evaluation", "trainer.py"), "betavae.callbacks"),  # the commands score through scoring/
        (("scoring",), "betavae.callbacks"),  # the core knows no hooks
        (("scoring",), "betavae.evaluation"),
        (("scoring", "callbacks", "evaluation", "models", "nets", "data", "disentanglement"), "betavae.cli"),
        (("scoring", "callbacks", "evaluation", "models", "nets", "data", "disentanglement"), "betavae.trainer"),
    ],
)
def test_arrows_point_one_way(rooms, forbidden):
    assert offending(sources(*rooms), forbidden) == {}


def test_scoring_has_no_lightning_hooks():
    """Functions and small classes: nothing in scoring/ subclasses a Lightning Callback."""
    for path in sources("scoring"):
        assert "lightning.pytorch.callbacks" not in imported_modules(path), path
