#!/usr/bin/env python3
"""Where routing latency goes: figure 1 re-run with stopwatches inside the supervisor.

`.venv/bin/python benchmarks/diagnose_routing.py [SESSIONS] [SAMPLES] [PAUSE_MS]` (default
200 600 0) runs the routing measurement with the supervisor under `trace_supervisor.py`
and prints, per stage, p50/p90/p99/max in ms. PAUSE_MS of quiet after each answer shows
a prompt to a supervisor that sat idle (the figure posts the next one at once):

    frame → ws          the server wrote the `posted` frame → trio-websocket handed it over
    ws → to agent       → the session is about to write the prompt to the agent's stdin
    to agent → read     → the fake agent read it (the write, and the agent waking up)

then the sessions.json encodes (wall time in a worker thread, and that thread's CPU: the
part that held the GIL) and generation-2 garbage collections the supervisor did
(each blocks its event loop), the atomic writes of sessions.json (in a worker thread) and
the appends to sessions.journal (on the event loop while the disk is quick: the handled
mark's wait before the prompt goes to its agent), and the slowest samples with any such
pause near them.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from benchmarks.latency import Sample, measure_routing  # noqa: E402
from benchmarks.stats import percentile  # noqa: E402

STAGES = ("total", "frame → ws", "ws → to agent", "to agent → read")


def stages(sample: Sample, ws: dict[str, float], to_agent: dict[str, float]) -> tuple[float, ...]:
    got, writing = ws[sample.post_id], to_agent[sample.text]
    return (sample.latency, got - sample.frame_sent, writing - got, sample.agent_read - writing)


def report(samples: list[Sample], records: list[dict[str, Any]]) -> None:
    ws = {r["post"]: r["t"] for r in records if r["what"] == "ws"}
    to_agent = {r["text"]: r["t"] for r in records if r["what"] == "to_agent"}
    rows = [stages(s, ws, to_agent) for s in samples]
    for i, name in enumerate(STAGES):
        xs = [row[i] * 1000 for row in rows]
        print(f"{name:18s} p50 {percentile(xs, 50):7.2f}  p90 {percentile(xs, 90):7.2f}  "
              f"p99 {percentile(xs, 99):7.2f}  max {max(xs):7.2f}  ms")
    pauses = [r for r in records if r["what"] in ("encode", "gc")]
    for what in ("encode", "gc", "write", "append"):
        these = [r for r in records if r["what"] == what]
        xs = [r["s"] * 1000 for r in these]
        if xs:
            print(f"{what:18s} n {len(xs):5d}  p50 {percentile(xs, 50):7.2f}  p99 {percentile(xs, 99):7.2f}  "
                  f"max {max(xs):7.2f}  ms" + ("" if what == "gc" else f"  (up to {max(r['bytes'] for r in these)} bytes)"))
            if what == "encode":  # in a worker thread: how much of that held the GIL
                cpu = [r["cpu"] * 1000 for r in these]
                print(f"{'  its thread CPU':18s} n {len(cpu):5d}  p50 {percentile(cpu, 50):7.2f}  "
                      f"p99 {percentile(cpu, 99):7.2f}  max {max(cpu):7.2f}  ms")
    writes = sorted(r["t"] for r in records if r["what"] in ("write", "append"))
    between = [sum(1 for t in writes if ws[s.post_id] < t <= to_agent[s.text]) for s in samples]
    counts = {n: between.count(n) for n in sorted(set(between))}
    print("state writes ended between ws and to agent (writes: samples):",
          ", ".join(f"{n}: {c}" for n, c in counts.items()))
    print("slowest samples (ms per stage) and pauses > 2 ms within 50 ms before them, then the")
    print("trio task steps over 0.5 ms that ended from 5 ms before the frame to the agent's read:")
    for sample, row in sorted(zip(samples, rows, strict=True), key=lambda x: -x[1][0])[:8]:
        near = [f"{r['what']} {r['s'] * 1000:.1f} ms at {(r['t'] - sample.frame_sent) * 1000:+.0f}"
                for r in pauses if -0.05 < r["t"] - sample.frame_sent < 0.01 and r["s"] > 0.002]
        steps = [f"{'.'.join(r['task'].split('.')[-2:])} {r['s'] * 1000:.1f} ms at {(r['t'] - sample.frame_sent) * 1000:+.1f}"
                 for r in records if r["what"] == "step"
                 and -0.005 < r["t"] - sample.frame_sent <= sample.latency + 0.0005]
        print("  " + " / ".join(f"{v * 1000:.2f}" for v in row), "|", "; ".join(near) or "-")
        for step in steps:
            print("      long step:", step)


async def main(sessions: int, samples: int, pause_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="supervisor-diagnose-") as tmp:
        trace = Path(tmp) / "trace.jsonl"
        prefix = [sys.executable, str(Path(__file__).with_name("trace_supervisor.py")), str(trace)]
        routing = await measure_routing(Path(tmp) / "world", sessions, samples, argv_prefix=prefix,
                                       pause_s=pause_ms / 1000)
        records = [json.loads(line) for line in trace.read_text().splitlines()]
    pause = f", {pause_ms} ms of quiet before each" if pause_ms else ""
    print(f"routing, {sessions} sessions, {samples} samples{pause}")
    report(routing.samples, records)


if __name__ == "__main__":
    given = [int(a) for a in sys.argv[1:4]]
    sessions, samples, pause_ms = (given + [200, 600, 0][len(given):])[:3]
    trio.run(main, sessions, samples, pause_ms)
