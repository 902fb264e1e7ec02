"""Cold start: from exec to connected (the bot's WebSocket open at the server), for the
built zipapp run by a bare `python3 -I` and for the source tree (`python -m supervisor`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from benchmarks.world import bench_world, configure, spawn_serving, stop_child

REPO = Path(__file__).resolve().parents[1]


def build_zipapp(out: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_zipapp.py"), "--output", str(out)],
        check=True, capture_output=True, timeout=600,
    )
    return out


async def measure_cold_start(tmp: Path, runs: int) -> tuple[list[float], list[float]]:
    """Seconds from exec to connected: (zipapp runs, source-tree runs), interleaved so
    both see the same machine load."""
    tmp.mkdir(parents=True, exist_ok=True)
    pyz = build_zipapp(tmp / "supervisor.pyz")
    zipapp: list[float] = []
    source: list[float] = []
    async with bench_world(tmp / "world") as w:
        configure(w, agent_log=False)
        for _ in range(runs):
            for prefix, out in (([sys.executable, "-I", str(pyz)], zipapp), (None, source)):
                t0 = await spawn_serving(w, prefix)
                out.append(time.time() - t0)
                await stop_child(w)
    return zipapp, source
