"""The benchmark suite in quick mode: every figure is produced (how fast is not asserted).

Runs `benchmarks/run.py --quick` as a child process, bounded in time. The mmpy_bot side of
the comparison needs its own virtual environment, built from PyPI on first use; when that
cannot be built (offline), the run says so in the table and this test accepts the skip.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXPECTED = {
    "routing.low", "routing.mid", "routing.high",  # 1. routing latency at three sizes
    "first-visible",  # 2.
    "stream.rps", "stream.429", "stream.complete",  # 3.
    "rss.idle", "rss.lazy", "cpu.routing", "cpu.throughput",  # 4.
    "restart", "restart.busy",  # 5.
    "throughput", "rest-per-answer", "duplicates",  # 6. and the PRODUCT extras
    "echo.reply", "echo.whole", "echo.rate", "echo.rss",  # the mmpy_bot comparison
    "coldstart",  # the zipapp's exec -> connected
    "w1.visible", "w1.requests", "w2.203ms", "w2.instant", "w2.requests", "w2.duplicates",  # issue 13
    "memory.flat",  # issue 9: RSS after many turns
}


def test_quick_mode_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["failed"] == []
    rows = {r["data"]["key"]: r for r in result["rows"]}
    assert set(rows) == EXPECTED
    for key, r in rows.items():
        assert r["value"] and not r["value"].startswith("failed"), (key, r["value"])
    # Latencies are real measurements: positive, and p99 >= p50.
    for key in ("routing.low", "routing.mid", "routing.high", "first-visible", "coldstart"):
        data = rows[key]["data"]
        assert 0 < data["p50_s"] <= data["p99_s"], (key, data)
    assert rows["throughput"]["data"]["answers"] > 0
    assert rows["restart"]["data"]["agents_started"] == 0
    echo = rows["echo.reply"]["data"]
    if not echo["mmpy"]:
        assert "skipped" in rows["echo.reply"]["value"], rows["echo.reply"]["value"]
    # The table itself: one Markdown table with the machine it ran on.
    assert "| machine |" in done.stdout and "Python" in done.stdout
    assert done.stdout.count("\n|") >= len(EXPECTED) + 2
