"""Results go to stdout, progress and logs to stderr: ``vidnet info ds > file`` keeps the tables."""

from __future__ import annotations

import subprocess
import sys


def test_info_tables_go_to_stdout(tiny_dataset):
    for target in (tiny_dataset, tiny_dataset / "move_left" / "move_left_002" / "frames.db"):
        p = subprocess.run([sys.executable, "-m", "vidnet", "info", str(target)], capture_output=True, text=True,
                           timeout=300)
        assert p.returncode == 0, p.stderr
        assert "n_frames" in p.stdout or "videos per class" in p.stdout, (p.stdout, p.stderr)
        assert "videos per class" not in p.stderr and "n_frames" not in p.stderr
