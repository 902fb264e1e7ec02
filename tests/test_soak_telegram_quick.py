"""The Telegram kill -9 soak in quick mode: every figure is produced, and nothing is lost or repeated.

Runs `benchmarks/soak_telegram.py --quick` (5 SIGKILLs, 3 long-poll cuts, 3 topics) as a
child process, bounded in time. The full run is not part of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.test_soak_quick import FIGURES

REPO = Path(__file__).resolve().parents[1]
TELEGRAM_FIGURES = FIGURES | {"while_down", "given_twice", "unconfirmed"}


def test_quick_telegram_soak_produces_its_figures_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "soak_telegram.py"), "--quick", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.exists(), done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) >= TELEGRAM_FIGURES, figures
    assert figures["quick"] is True
    assert figures["kills"] == 5 and figures["drops"] >= 1, figures
    assert figures["prompts"] > 0 and figures["run_s"] > 0, figures
    assert figures["lost"] == 0, done.stdout
    assert figures["duplicated"] == 0, done.stdout
    assert figures["other_thread"] == 0, done.stdout
    assert figures["agents_left"] == 0, done.stdout
    assert figures["stray_files"] == 0 and figures["files_missing"] == 0, done.stdout
    assert figures["unconfirmed"] == 0, done.stdout
    assert figures["state_loads"] is True, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "lost" in done.stdout and "long-poll cuts" in done.stdout and "run time" in done.stdout
