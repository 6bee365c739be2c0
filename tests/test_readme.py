"""The README's tours run as written: every command of a block marked ``<!-- tour: NAME -->`` ... ``<!-- /tour
-->``, in a fresh folder, exits 0 and prints what the README shows (numbers aside: timings and accuracies vary
between machines), so a tour cannot silently rot."""

from __future__ import annotations

import csv
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TRIM = "..."  # an output line of the README standing for any number of lines left out


@dataclass
class Step:
    """One ``$ command`` of a tour and the output lines the README shows under it."""

    command: str
    expected: list[str] = field(default_factory=list)


def read_tour(text: str, name: str) -> list[Step]:
    """The steps of the tour ``name``: the ``$ `` lines of its code blocks (with a here-document up to its
    ``EOF`` line, or lines continued by a backslash), each with the lines that follow it up to the next."""
    start, end = f"<!-- tour: {name} -->", "<!-- /tour -->"
    if start not in text:
        raise AssertionError(f"README.md has no {start} block")
    block = text.split(start, 1)[1].split(end, 1)[0]
    steps: list[Step] = []
    for code in re.findall(r"^```[a-z]*\n(.*?)^```", block, re.S | re.M):
        lines = code.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                command = [line[2:]]
                heredoc = re.search(r"<<'?(\w+)'?", line)
                while command[-1].endswith("\\") or (heredoc and command[-1] != heredoc.group(1)):
                    i += 1
                    command.append(lines[i])
                steps.append(Step("\n".join(command)))
            else:
                assert steps, f"output before any command in the {name} tour: {line!r}"
                steps[-1].expected.append(line)
            i += 1
    return steps


# What a trained model gets right or wrong varies between machines (floating-point sums in another order): the
# sample's class names in rankings and predictions compare as one word, the list of confusions not at all.
_CLASS = re.compile(r"\b(?:move_(?:left|right|up|down)|rotate_c?cw|grow|shrink)\b")
_VARIES = ("most confused:",)


def _normal(line: str) -> str:
    """A line with every number as ``#``, a sample class name as ``CLASS``, runs of blanks as one and a progress
    bar as one glyph: what is compared (figures, and the widths they take, vary between machines)."""
    line = line.strip()
    if line.startswith(_VARIES):
        return next(v for v in _VARIES if line.startswith(v))
    line = _CLASS.sub("CLASS", line)
    line = re.sub(r"\d+(?:[.,:]\d+)*(?:e[+-]?\d+)?%?", "#", line)
    line = re.sub(r"━+", "━", line)
    return re.sub(r"\s+", " ", line).strip()


def assert_prints(expected: list[str], output: str, command: str) -> None:
    """``output`` is ``expected`` up to numbers, where a line ``...`` stands for any number of lines."""
    pattern = "".join(r"(?:[^\n]*\n)*?" if line.strip() == TRIM else re.escape(_normal(line)) + r"\n"
                      for line in expected)
    actual = "".join(_normal(line) + "\n" for line in output.splitlines())
    assert re.fullmatch(pattern, actual), (
        f"$ {command}\nprinted:\n{output}\nthe README shows:\n" + "\n".join(expected))


def run_tour(steps: list[Step], cwd: Path, tmp_path: Path) -> list[str]:
    """Run each step with bash in ``cwd``, ``vidnet`` and ``python3`` being this interpreter (and this checkout);
    check what it prints; return the outputs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, target in (("vidnet", f'"{sys.executable}" -m vidnet'), ("python3", f'"{sys.executable}"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    root = str(README.parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "120",
           "PYTHONUNBUFFERED": "1", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]),
           "VIDNET_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("FORCE_COLOR", None)
    outputs = []
    for step in steps:
        r = subprocess.run(["bash", "-c", "set -euo pipefail\n" + step.command], cwd=cwd, env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=600)
        assert r.returncode == 0, f"$ {step.command}\nexited {r.returncode}:\n{r.stdout}"
        assert_prints(step.expected, r.stdout, step.command)
        outputs.append(r.stdout)
    return outputs


def test_read_tour_and_matching():
    text = """x\n<!-- tour: t -->\n```console\n$ a \\\n  --b\nout 1.5 s\n...\n$ python3 - <<'EOF'\nprint(1)\nEOF
```\n\n```\n$ c\n```\n<!-- /tour -->\n"""
    steps = read_tour(text, "t")
    assert [s.command for s in steps] == ["a \\\n  --b", "python3 - <<'EOF'\nprint(1)\nEOF", "c"]
    assert steps[0].expected == ["out 1.5 s", "..."] and steps[2].expected == []
    assert_prints(steps[0].expected, "out 22.75 s\nmore\nlines\n", "a")
    assert_prints(["best: move_up 100% (8), grow 90% (8)", "most confused: none"],
                  "best: move_left 88% (8), shrink 50% (8)\nmost confused: move_up -> move_left x1\n", "b")
    with pytest.raises(AssertionError):
        assert_prints(["top1 95.00% (80 videos)"], "top1 95.00% (80 segments)\n", "x")
    with pytest.raises(AssertionError):
        assert_prints(["a", "b"], "a\n", "x")


@pytest.mark.slow
def test_segment_tour(tmp_path):
    """Segments cut from the sample videos through convert, train, test and fuse: every prediction is keyed by
    its store, the index id (repeated by the two segments of a video) and the times are columns."""
    work = tmp_path / "work"
    work.mkdir()
    steps = read_tour(README.read_text(encoding="utf-8"), "segments")
    commands = " ".join(s.command.split()[0] for s in steps)
    assert commands == "vidnet python3 vidnet vidnet vidnet vidnet head", commands
    outputs = run_tour(steps, work, tmp_path)

    rows = [r for r in csv.DictReader((work / "segments" / "index.csv").open()) if r["split"] == "val"]
    keys = [r["path"].rsplit("/", 1)[-1] for r in rows]
    assert len(set(keys)) == len(keys) > len({r["id"] for r in rows})  # ids repeat, keys do not
    test_dir = next(work.glob("runs/segments/*/test-val"))
    table = list(csv.DictReader((test_dir / "video_predictions.csv").open()))
    assert [t["key"] for t in table] == keys and [t["video_id"] for t in table] == [r["id"] for r in rows]
    assert [(t["time_start"], t["time_end"]) for t in table] == [(r["time_start"], r["time_end"]) for r in rows]
    # Each model and the fusion score every segment (not one per id); the README's lines name the same keys.
    counts = re.findall(r"\((\d+) videos\)", outputs[-2])
    assert len(counts) == 3 and set(counts) == {str(len(rows))}, outputs[-2]
    shown = [line.split(",")[:5] for line in steps[-1].expected]
    assert shown == [line.split(",")[:5] for line in outputs[-1].splitlines()]
