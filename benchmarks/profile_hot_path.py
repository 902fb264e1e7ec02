#!/usr/bin/env python3
"""Where the supervisor's CPU goes on the hot path (a diagnostic, not a figure).

`.venv/bin/python benchmarks/profile_hot_path.py WORKLOAD SESSIONS N [--runs K] [--profile OUT]`

WORKLOAD is `loop` (figure 6: SESSIONS threads, N prompts each, instant agent, closed
loop) or `routing` (figure 1: N prompts one at a time over SESSIONS live sessions). Each
run prints the supervisor's CPU per 1,000 prompts (utime + stime from /proc), the answers
per second or the routing p50/p99, and the load average, so that a change can be compared
with the code before it in the same conditions, several runs each.

With `--profile OUT` the supervisor runs under cProfile (its main thread, i.e. the event
loop, with the journal's appends; the snapshots' fsyncs run in a worker thread and are
not in it) and the functions with the most own time are printed, then a summary by
package. The profiler's overhead is in that run's CPU figure: compare profiled runs only
with profiled runs.
"""

from __future__ import annotations

import argparse
import collections
import os
import pstats
import re
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import trio  # noqa: E402

from benchmarks.latency import measure_routing  # noqa: E402
from benchmarks.load import measure_throughput  # noqa: E402
from benchmarks.stats import percentile  # noqa: E402


async def once(workload: str, sessions: int, n: int, prefix: list[str] | None) -> str:
    with tempfile.TemporaryDirectory(prefix="supervisor-profile-") as tmp:
        if workload == "loop":
            loop = await measure_throughput(Path(tmp), sessions, n, argv_prefix=prefix)
            figure = (f"{loop.answers} answers {loop.per_second:6.1f}/s · supervisor CPU "
                      f"{loop.cpu_s / loop.answers * 1000:5.2f} s per 1,000 · "
                      f"REST {loop.requests / loop.answers:.2f}/answer")
        else:
            routing = await measure_routing(Path(tmp), sessions, n, argv_prefix=prefix)
            xs = [x * 1000 for x in routing.latencies]
            figure = (f"routing p50 {percentile(xs, 50):6.2f} ms · p99 {percentile(xs, 99):6.2f} ms · "
                      f"supervisor CPU {routing.cpu_per_1000:5.2f} s per 1,000")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{figure} · load {load}"


def by_package(path: Path, top: int) -> None:
    """Own time summed per package (supervisor modules one by one)."""
    totals: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in pstats.Stats(str(path)).stats.items():  # type: ignore[attr-defined]
        if filename == "~":
            key = f"builtin {name}"
        elif match := re.search(r"site-packages/([^/]+)", filename):
            key = match.group(1)
        elif "/supervisor/" in filename:
            key = "supervisor/" + filename.split("/supervisor/", 1)[1]
        else:
            key = Path(filename).name
        totals[key] += own
    whole = sum(totals.values())
    print(f"own time by package (total {whole:.2f} s, idle polls included):")
    for key, own in totals.most_common(top):
        print(f"  {own:7.3f} s {100 * own / whole:5.1f} %  {key}")


LIBRARY_LAYERS = {
    "trio": "event loop (trio)",
    "httpcore": "HTTP client (httpx, httpcore, h11)", "h11": "HTTP client (httpx, httpcore, h11)",
    "httpx": "HTTP client (httpx, httpcore, h11)",
    "wsproto": "WebSocket (trio-websocket, wsproto)", "trio_websocket": "WebSocket (trio-websocket, wsproto)",
    "attr": "attrs, cattrs", "cattrs": "attrs, cattrs",
}  # fmt: skip


def _layer(filename: str, name: str) -> str:
    if filename == "~":
        if "poll" in name:
            return "idle (waiting in epoll)"
        if re.search(r"socket|posix\.(write|read)", name):
            return "kernel: sockets and pipes"
        return "start-up (imports, code generation)" if "compile" in name else "builtins (json, isinstance...)"
    if match := re.search(r"site-packages/([^/]+)", filename):
        return LIBRARY_LAYERS.get(match.group(1), "other libraries")
    if "/supervisor/" in filename:
        return "supervisor: " + filename.split("/supervisor/", 1)[1].split("/")[0]
    if "importlib" in filename or filename.startswith("<frozen"):
        return "start-up (imports, code generation)"
    return "standard library (json, contextlib, typing...)"


def by_layer(path: Path) -> None:
    """Own time summed per layer: the event loop, the HTTP client, the supervisor's own code..."""
    totals: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, own, _cum, _callers) in pstats.Stats(str(path)).stats.items():  # type: ignore[attr-defined]
        totals[_layer(filename, name)] += own
    whole = sum(totals.values())
    print(f"own time by layer (total {whole:.2f} s):")
    for key, own in totals.most_common():
        if own >= 0.005 * whole:
            print(f"  {own:7.3f} s {100 * own / whole:5.1f} %  {key}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload", choices=("loop", "routing"))
    parser.add_argument("sessions", type=int)
    parser.add_argument("n", type=int)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    prefix = None
    if args.profile is not None:
        prefix = [sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "supervisor"]
    for _ in range(args.runs):
        print(trio.run(once, args.workload, args.sessions, args.n, prefix), flush=True)
    if args.profile is not None:
        pstats.Stats(str(args.profile)).sort_stats("tottime").print_stats(40)
        by_package(args.profile, 40)
        by_layer(args.profile)


if __name__ == "__main__":
    main()
