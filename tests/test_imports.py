"""Subpackages use each other's public API only: no private name is imported across subpackages."""

from __future__ import annotations

import ast
from pathlib import Path

import vidnet

ROOT = Path(vidnet.__file__).parent


def _subpackage(module: str) -> str:
    """``vidnet.train.loop`` -> ``train``; top-level machinery (``vidnet._io``) -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def test_no_private_names_across_subpackages():
    offences = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        own = rel.parts[1] if len(rel.parts) > 2 else ""
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or not (node.module or "").startswith("vidnet."):
                continue
            other = _subpackage(node.module)
            if not other or other == own:
                continue
            offences += [f"{rel}: {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not offences, "private names imported across subpackages:\n" + "\n".join(offences)
