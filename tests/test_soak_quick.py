"""The kill -9 soaks in quick mode: every figure is produced, and nothing is lost or repeated.

Runs `benchmarks/soak.py --quick` (5 SIGKILLs, 3 WebSocket drops, 3 sessions) and
`benchmarks/soak_telegram.py --quick` (5 SIGKILLs, 3 long-poll cuts, 3 topics) as child
processes, bounded in time. The full runs are not part of the suite.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIGURES = {
    "kills", "drops", "prompts", "answered", "noticed", "lost", "duplicated", "other_thread",
    "answered_and_noticed", "delivered_twice", "with_file", "stray_files", "files_missing",
    "agents_left", "sessions_failed",
    "state_loads", "run_s",
}
# Telegram's own: prompts written while down, updates given twice, never confirmed (must be 0)
TELEGRAM_FIGURES = {"while_down", "given_twice", "unconfirmed"}


@pytest.mark.parametrize(
    ("soak", "own_figures", "drops_are"),
    [("soak.py", set(), "WebSocket drops"), ("soak_telegram.py", TELEGRAM_FIGURES, "long-poll cuts")],
    ids=["mattermost", "telegram"],
)
def test_quick_soak_produces_its_figures_and_loses_nothing(
    tmp_path: Path, soak: str, own_figures: set[str], drops_are: str
) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / soak), "--quick", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert out.exists(), done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert set(figures) >= FIGURES | own_figures, figures
    assert figures["quick"] is True
    assert figures["kills"] == 5 and figures["drops"] >= 1, figures
    assert figures["prompts"] > 0 and figures["run_s"] > 0, figures
    assert figures["lost"] == 0, done.stdout
    assert figures["duplicated"] == 0, done.stdout
    assert figures["other_thread"] == 0, done.stdout
    assert figures["agents_left"] == 0, done.stdout
    assert figures["stray_files"] == 0 and figures["files_missing"] == 0, done.stdout
    assert figures.get("unconfirmed", 0) == 0, done.stdout
    assert figures["state_loads"] is True, done.stdout
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "lost" in done.stdout and drops_are in done.stdout and "run time" in done.stdout
