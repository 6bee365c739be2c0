"""The parts of the package import each other only along the allowed arrows (the project's architecture):
every import of every module, lazy imports inside functions included, is read with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import vidnet

PACKAGE = Path(vidnet.__file__).parent
REPO = PACKAGE.parent

# The parts: (part, module prefix). The first matching prefix wins; anything else of vidnet is core.
PARTS = [("cli", "vidnet.cli"), ("cli", "vidnet.__main__"), ("data", "vidnet.data"), ("network", "vidnet.network"),
         ("train", "vidnet.train"), ("eval", "vidnet.eval"), ("testing", "vidnet.testing"), ("tools", "tools")]
# Arrows that must never exist (importer part -> imported part).
FORBIDDEN = {
    "data": {"network", "train", "eval", "cli", "tools"},
    "network": {"data", "train", "eval", "cli", "tools"},
    "eval": {"train", "cli", "tools"},
    "train": {"cli", "tools"},
    "core": {"data", "network", "train", "eval", "cli", "tools"},
    "tools": {"cli"},
    "cli": {"tools"},
    "testing": {"cli", "tools"},  # fixtures for the tests (deterministic weights, clips, small videos)
}


def part_of(module: str) -> str:
    for part, prefix in PARTS:
        if module == prefix or module.startswith(prefix + "."):
            return part
    return "core"


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """``(line, imported module)`` of every import in the file, relative imports resolved."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = module.split(".")[: -node.level]
                base = ".".join(parent + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{a.name}") for a in node.names]  # `from vidnet import checkpoint`
    return found


def forbidden_arrows() -> list[str]:
    offences = []
    files = [(p, ".".join(p.relative_to(REPO).with_suffix("").parts)) for p in sorted(PACKAGE.rglob("*.py"))]
    files += [(p, f"tools.{p.stem}") for p in sorted((REPO / "tools").glob("*.py"))]
    for path, module in files:
        module = module.removesuffix(".__init__")
        src = part_of(module)
        for line, target in imports(path, module):
            if not (target.startswith("vidnet") or target.startswith("tools")):
                continue
            dst = part_of(target)
            if target in ("vidnet", "tools") or dst == src:
                continue
            if dst in FORBIDDEN.get(src, set()):
                offences.append(f"{path.relative_to(REPO)}:{line}: {src} -> {dst} ({target})")
    return sorted(set(offences))


def test_no_forbidden_imports():
    offences = forbidden_arrows()
    assert not offences, "imports across a forbidden arrow:\n" + "\n".join(offences)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("def f():\n    from vidnet.train import loop\n    from ..cli import app\n")
    found = [t for _, t in imports(mod, "vidnet.eval.m")]
    assert "vidnet.train.loop" in found and "vidnet.cli.app" in found
    assert part_of("vidnet.train.loop") == "train" and part_of("vidnet.checkpoint") == "core"
    assert "train" in FORBIDDEN["eval"] and "data" in FORBIDDEN["network"] and "cli" in FORBIDDEN["tools"]
