#!/usr/bin/env python3
"""Every benchmark, one command: `.venv/bin/python benchmarks/run.py [--quick]`.

Runs the supervisor (as a child process) against the fake Mattermost server and the fake
agent on loopback, plus mmpy_bot 2.2.1 against the same server, and prints one Markdown
table: each figure, its value (median and p99 where it is a latency), its target, and
whether it was met. `--quick` runs every figure at a toy size in seconds and checks only
that each was produced (exit status 1 if one was not); target verdicts then mean nothing.
See benchmarks/README.md for what each figure means and how it is measured.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import attrs  # noqa: E402
import trio  # noqa: E402

from benchmarks import coldstart, compare, latency, load, workloads, world  # noqa: E402
from benchmarks.report import Row, table  # noqa: E402
from benchmarks.stats import latency_text, p50_p99  # noqa: E402
from supervisor.core.state import SLACK_MS  # noqa: E402

MIB = 1 << 20
ROUTING_KEYS = ("routing.low", "routing.mid", "routing.high")


@attrs.frozen
class Sizes:
    routing_sessions: tuple[int, int, int]
    routing_samples: int
    visible_sessions: int
    visible_samples: int
    visible_slow_s: float
    restart_sessions: int
    stream_sessions: int
    stream_chars: int
    stream_deltas: int
    stream_slow_s: float
    throughput_sessions: int
    throughput_per_session: int
    echo_threads: int
    echo_samples: int
    echo_per_thread: int
    mmpy_setup_s: float
    cold_starts: int
    w1_prompts: int
    w2_threads: int
    w2_per_thread: int
    memory_threads: int
    # The router's index of posts is full by the second, and the ledger's minute of handled
    # ids too if a minute has passed by then (the row says when it has not).
    memory_turns: tuple[int, int, int]


FULL = Sizes(
    routing_sessions=(1, 50, 200), routing_samples=1000,
    visible_sessions=10, visible_samples=300, visible_slow_s=0.3,
    restart_sessions=200,
    stream_sessions=50, stream_chars=20_000, stream_deltas=40, stream_slow_s=4.0,
    throughput_sessions=50, throughput_per_session=30,
    echo_threads=10, echo_samples=300, echo_per_thread=50,
    mmpy_setup_s=300,
    cold_starts=10,
    w1_prompts=50, w2_threads=10, w2_per_thread=10,
    memory_threads=10, memory_turns=(1_000, 20_000, 30_000),
)
QUICK = Sizes(
    routing_sessions=(1, 2, 3), routing_samples=12,
    visible_sessions=2, visible_samples=6, visible_slow_s=0.1,
    restart_sessions=5,
    stream_sessions=3, stream_chars=1_000, stream_deltas=4, stream_slow_s=0.3,
    throughput_sessions=2, throughput_per_session=4,
    echo_threads=2, echo_samples=6, echo_per_thread=4,
    mmpy_setup_s=60,
    cold_starts=1,
    w1_prompts=4, w2_threads=2, w2_per_thread=2,
    memory_threads=2, memory_turns=(20, 40, 60),
)


class Bench:
    """Collects rows; a figure that fails becomes a row saying so, and the run goes on."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.rows: list[Row] = []
        self.failed: list[str] = []

    async def figure(self, name: str, keys: tuple[str, ...], body: Callable[[Path], Awaitable[list[Row]]]) -> None:
        started = time.monotonic()
        print(f"… {name}", file=sys.stderr, flush=True)
        try:
            rows = await body(self.work / name)
        except Exception as exc:  # one broken figure must not hide the others
            traceback.print_exc()
            self.failed.append(name)
            rows = [Row(f"{name}: not measured", f"failed: {type(exc).__name__}: {exc}"[:300],
                        met=False, data={"key": k, "failed": True}) for k in keys]
        self.rows += rows
        print(f"  done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)


def row(key: str, figure: str, value: str, target: str = "—", met: bool | None = None, **data: object) -> Row:
    return Row(figure, value, target, met, {"key": key, **data})


# --- the figures ------------------------------------------------------------------------


async def routing_figures(bench: Bench, s: Sizes) -> None:
    high = s.routing_sessions[-1]
    for key, sessions in zip(ROUTING_KEYS, s.routing_sessions, strict=True):
        last = sessions == high

        async def body(tmp: Path, sessions: int = sessions, key: str = key, last: bool = last) -> list[Row]:
            r = await latency.measure_routing(tmp, sessions, s.routing_samples, restart=last)
            p50, p99 = p50_p99(r.latencies)
            # PRODUCT's target is for 200 sessions; the smaller rows show how it scales.
            target, bound = ("p99 ≤ 2 ms (PRODUCT)", 0.002) if sessions == 200 else ("p99 < 5 ms", 0.005)
            rows = [row(key, f"1. Routing latency, posted frame → agent stdin, {sessions} live session(s)",
                        latency_text(r.latencies), target, p99 <= bound,
                        p50_s=p50, p99_s=p99, n=len(r.latencies), sessions=sessions)]
            if last:
                rows += [
                    row("rss.idle", f"4. Supervisor RSS, {sessions} idle sessions (their agents running, not counted)",
                        f"{r.rss_after / MIB:.1f} MiB = {r.rss_after / 1e6:.1f} MB (before the prompts: {r.rss_idle / MIB:.1f} MiB)",
                        "< 100 MB", r.rss_after < 100e6, rss_bytes=r.rss_after),
                    row("rss.lazy", f"4. Supervisor RSS, {sessions} sessions restored, no agent started",
                        f"{r.rss_lazy / MIB:.1f} MiB", "—", None, rss_bytes=r.rss_lazy),
                    row("cpu.routing", f"4. Supervisor CPU per 1,000 prompts routed and answered ({sessions} sessions, one at a time)",
                        f"{r.cpu_per_1000:.2f} s", "—", None, cpu_s=r.cpu_per_1000),
                ]
                assert r.restart is not None
                rows.append(_restart_row("restart.busy", r.restart, f"after the {s.routing_samples} prompts above"))
            return rows

        await bench.figure(f"routing-{sessions}", (key,) + (("rss.idle", "rss.lazy", "cpu.routing", "restart.busy") if last else ()), body)


def _restart_row(key: str, r: latency.Restart, how: str) -> Row:
    return row(
        key, f"5. Restart: exec → all {r.sessions} persisted sessions rebound and serving ({how})",
        f"{r.serving_s:.2f} s (WebSocket open at {r.socket_s:.2f} s; agents started: {r.agents_started})",
        "< 2 s, lazy agent start", r.serving_s < 2 and r.agents_started == 0,
        serving_s=r.serving_s, socket_s=r.socket_s, agents_started=r.agents_started,
    )


async def first_visible_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        samples = await latency.measure_first_visible(tmp, s.visible_sessions, s.visible_samples, s.visible_slow_s)
        p50, p99 = p50_p99(samples)
        return [row("first-visible", f"2. First-visible latency, agent's first text → post exists ({s.visible_sessions} sessions streaming)",
                    latency_text(samples), "p99 < 300 ms", p99 < 0.3, p50_s=p50, p99_s=p99, n=len(samples))]

    await bench.figure("first-visible", ("first-visible",), body)


async def restart_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        r = await latency.measure_restart(tmp, s.restart_sessions)
        return [_restart_row("restart", r, "a message waiting in each thread")]

    await bench.figure("restart", ("restart",), body)


async def streaming_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        r = await load.measure_streaming(tmp, s.stream_sessions, s.stream_chars, s.stream_deltas, s.stream_slow_s)
        where = f"{r.sessions} sessions streaming {s.stream_chars:,}-char answers over {s.stream_slow_s:g} s, server limit {r.rate:g} req/s (burst {r.burst})"
        ratio = r.complete_s / r.lower_bound_s
        return [
            row("stream.rps", f"3. Requests/s sent ({where})",
                f"{r.requests_per_s:.1f} req/s ({r.requests} requests)", "≤ the limit", r.rate_limited == 0,
                requests_per_s=r.requests_per_s, requests=r.requests),
            row("stream.429", "3. 429 responses received (same run)", str(r.rate_limited), "0", r.rate_limited == 0,
                rate_limited=r.rate_limited),
            row("stream.complete", "3. Time until every answer is complete (same run) vs the lower bound the limit allows",
                f"{r.complete_s:.1f} s vs {r.lower_bound_s:.1f} s = {ratio:.2f}× (agents done at {r.agents_done_s:.1f} s; "
                f"≥ {r.min_requests} requests needed, {r.burst} burst + {r.rate:g}/s)",
                "≤ 1.5× the bound (issue 13)", ratio <= 1.5, complete_s=r.complete_s, lower_bound_s=r.lower_bound_s,
                ratio=ratio),
        ]

    await bench.figure("streaming", ("stream.rps", "stream.429", "stream.complete"), body)


async def throughput_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        r = await load.measure_throughput(tmp, s.throughput_sessions, s.throughput_per_session)
        return [
            row("throughput", f"6. Throughput, {s.throughput_sessions} sessions, instant agent, closed loop (answer whole in its thread)",
                f"{r.per_second:.0f} answers/s ({r.answers} in {r.elapsed_s:.1f} s; supervisor CPU {r.cpu_s / r.elapsed_s:.0%} of a core, "
                f"fake server + driver {r.own_cpu_s / r.elapsed_s:.0%})",
                "≥ 400/s (PRODUCT, 10 threads)", r.per_second >= 400, per_second=r.per_second, answers=r.answers),
            row("cpu.throughput", f"4. Supervisor CPU per 1,000 prompts routed and answered ({s.throughput_sessions} sessions, closed loop)",
                f"{r.cpu_s / r.answers * 1000:.2f} s", "—", None, cpu_s=r.cpu_s / r.answers * 1000),
            row("rest-per-answer", "REST requests per short answer (same run)", f"{r.requests / r.answers:.2f}",
                "≤ 2 (PRODUCT)", r.requests / r.answers <= 2, per_answer=r.requests / r.answers),
            row("duplicates", "Duplicate bot posts (same run)", str(r.duplicates), "0", r.duplicates == 0,
                count=r.duplicates),
        ]

    await bench.figure("throughput", ("throughput", "cpu.throughput", "rest-per-answer", "duplicates"), body)


ECHO_KEYS = ("echo.reply", "echo.whole", "echo.rate", "echo.rss")


async def echo_figures(bench: Bench, s: Sizes, with_mmpy: bool) -> None:
    async def body(tmp: Path) -> list[Row]:
        ours = await compare.measure_supervisor_echo(tmp / "supervisor", s.echo_threads, s.echo_samples, s.echo_per_thread)
        theirs: compare.Echo | None = None
        note = "not run (--no-mmpy)"
        if with_mmpy:
            try:
                python = await trio.to_thread.run_sync(compare.mmpy_python, s.mmpy_setup_s)
                theirs = await compare.measure_mmpy(tmp / "mmpy", python, s.echo_threads, s.echo_samples, s.echo_per_thread)
            except RuntimeError as exc:
                note = f"skipped: {exc}"
        return _echo_rows(s, ours, theirs, note)

    await bench.figure("echo", ECHO_KEYS, body)


def _echo_rows(s: Sizes, ours: compare.Echo, theirs: compare.Echo | None, note: str) -> list[Row]:
    where = f"{s.echo_threads} threads"

    def versus(a: str, b: str | None, ratio: str) -> str:
        if b is None:
            return f"supervisor {a} · mmpy_bot {note}"
        return f"supervisor {a} · mmpy_bot {b} · supervisor/mmpy_bot {ratio}"

    def ratios(ours: list[float], theirs: list[float] | None) -> str:
        if not theirs:
            return ""
        (a50, a99), (b50, b99) = p50_p99(ours), p50_p99(theirs)
        return f"p50 {a50 / b50:.1f}×, p99 {a99 / b99:.1f}×"

    o50, o99 = p50_p99(ours.first)
    w50, w99 = p50_p99(ours.whole)
    rows = []
    t50, t99 = p50_p99(theirs.first) if theirs else (None, None)
    rows.append(row("echo.reply", f"Echo bot vs mmpy_bot 2.2.1, {where}: posted frame → reply post exists (= latency the bot adds)",
                    versus(latency_text(ours.first), latency_text(theirs.first) if theirs else None,
                           ratios(ours.first, theirs.first if theirs else None)),
                    "p50 ≤ 3 ms, p99 ≤ 10 ms (an earlier PRODUCT.md)", o50 <= 0.003 and o99 <= 0.010,
                    supervisor_p50_s=o50, supervisor_p99_s=o99, mmpy_p50_s=t50, mmpy_p99_s=t99, mmpy=theirs is not None))
    rows.append(row("echo.whole", f"Echo bot vs mmpy_bot, {where}: posted frame → reply shows its whole text",
                    versus(latency_text(ours.whole), latency_text(theirs.first) if theirs else None,
                           ratios(ours.whole, theirs.first if theirs else None)),
                    "—", None, supervisor_p50_s=w50, supervisor_p99_s=w99))
    ra, rb = ours.loop.per_second, theirs.loop.per_second if theirs else None
    rows.append(row("echo.rate", f"Echo bot vs mmpy_bot, {where}: replies per second (closed loop, reply whole)",
                    versus(f"{ra:.0f}/s", f"{rb:.0f}/s" if rb else None, f"{ra / rb:.2f}×" if rb else ""),
                    "≥ 400/s (PRODUCT)", ra >= 400, supervisor=ra, mmpy=rb))
    ma, mb = ours.rss / MIB, theirs.rss / MIB if theirs else None
    rows.append(row("echo.rss", f"Echo bot vs mmpy_bot, {where}: resident memory (supervisor: agents not counted)",
                    versus(f"{ma:.1f} MiB", f"{mb:.1f} MiB" if mb else None, f"{ma / mb:.2f}×" if mb else ""),
                    "≤ 60 MiB at 10 sessions (PRODUCT)", ma <= 60, supervisor_mib=ma, mmpy_mib=mb))
    return rows


W_KEYS = ("w1.visible", "w1.requests", "w2.203ms", "w2.instant", "w2.requests", "w2.duplicates")


async def workload_figures(bench: Bench, s: Sizes, with_mmpy: bool) -> None:
    async def body(tmp: Path) -> list[Row]:
        w1 = await workloads.measure_w1(tmp / "w1", s.w1_prompts)
        slow = await workloads.measure_w2(tmp / "w2-203ms", s.w2_threads, s.w2_per_thread, workloads.AGENT_203MS)
        instant = await workloads.measure_w2(tmp / "w2-instant", s.w2_threads, s.w2_per_thread, "")
        mmpy: workloads.W2 | None = None
        note = "mmpy_bot not run (--no-mmpy)"
        if with_mmpy:
            try:
                python = await trio.to_thread.run_sync(compare.mmpy_python, s.mmpy_setup_s)
                mmpy = await workloads.measure_mmpy_w2(tmp / "w2-mmpy", python, s.w2_threads, s.w2_per_thread)
                note = f"mmpy_bot (no agent) {mmpy.per_second:.0f}/s"
            except RuntimeError as exc:
                note = f"mmpy_bot skipped: {exc}"
        p50, p99 = p50_p99(w1.visible)
        n = s.w2_threads * s.w2_per_thread
        queued_share = (s.w2_per_thread - 1) / s.w2_per_thread
        # ≤ 2 per answer, and ≤ 1 more for each answer whose prompt was queued.
        requests_bound = 2 + queued_share

        def versus(ours: float) -> str:
            return f"{note}; supervisor/mmpy_bot {ours / mmpy.per_second:.2f}×" if mmpy else note

        return [
            row("w1.visible", f"W1: one thread, {s.w1_prompts} prompts one after another, ~203 ms agent: agent's end of turn → whole answer visible",
                latency_text(w1.visible), "p50 ≤ 10 ms (issue 13; was 507 ms)", p50 <= 0.010, p50_s=p50, p99_s=p99, n=len(w1.visible)),
            row("w1.requests", "W1: REST requests per answer (same run; answer post + its final edit with the footer)",
                f"{w1.requests_per_answer:.2f} (duplicates: {w1.duplicates})", "≤ 2", w1.requests_per_answer <= 2,
                per_answer=w1.requests_per_answer, duplicates=w1.duplicates),
            row("w2.203ms", f"W2: {s.w2_threads} threads × {s.w2_per_thread} prompts posted at once, ~203 ms agent: answers/s",
                f"{slow.per_second:.1f}/s ({slow.answers} in {slow.elapsed_s:.2f} s) · {versus(slow.per_second)}",
                "≥ 45/s (was 3.45)", slow.per_second >= 45, per_second=slow.per_second, answers=slow.answers,
                mmpy=mmpy.per_second if mmpy else None),
            row("w2.instant", "W2 with an instant agent: answers/s",
                f"{instant.per_second:.0f}/s ({instant.answers} in {instant.elapsed_s:.2f} s) · {versus(instant.per_second)}",
                "≥ 400/s, or the profile and the ratio", instant.per_second >= 400, per_second=instant.per_second,
                answers=instant.answers, mmpy=mmpy.per_second if mmpy else None),
            row("w2.requests", f"W2: REST requests per answer, {s.w2_per_thread - 1} of {s.w2_per_thread} prompts per thread queued "
                "(each said in the running answer's footer)",
                f"~203 ms agent {slow.requests_per_answer:.2f} · instant {instant.requests_per_answer:.2f} · "
                f"mmpy_bot {mmpy.requests_per_answer:.2f}" if mmpy else
                f"~203 ms agent {slow.requests_per_answer:.2f} · instant {instant.requests_per_answer:.2f}",
                f"≤ 2 per answer + ≤ 1 per queued prompt (≤ {requests_bound:.2f})",
                max(slow.requests_per_answer, instant.requests_per_answer) <= requests_bound,
                slow=slow.requests_per_answer, instant=instant.requests_per_answer, queued_share=queued_share),
            row("w2.duplicates", "Duplicate answer posts (W1, W2 runs)", str(w1.duplicates + slow.duplicates + instant.duplicates),
                "0", w1.duplicates + slow.duplicates + instant.duplicates == 0, count=w1.duplicates + slow.duplicates + instant.duplicates,
                answers=s.w1_prompts + 2 * n),
        ]

    await bench.figure("workloads", W_KEYS, body)


async def memory_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        m = await workloads.measure_memory(tmp, s.memory_threads, s.memory_turns)
        (a, b, c), (ra, rb, rc), (_, tb, _) = m.turns, m.rss, m.elapsed_s
        # RSS grows until the router's index of the last 5,000 posts is full, and the
        # ledger's handled ids of the last minute (`SLACK_MS`): the claim is that it stops
        # there, so the check is on the stretch after both, and only if there was one.
        full = tb >= SLACK_MS / 1000
        return [row("memory.flat", f"Supervisor RSS after {a:,} / {b:,} / {c:,} turns ({s.memory_threads} sessions, instant agent; "
                                   f"{b:,} turns in {tb:.0f} s)",
                    f"{ra / MIB:.1f} → {rb / MIB:.1f} → {rc / MIB:.1f} MiB ({(rc - rb) / MIB:+.1f} MiB over the last {c - b:,})"
                    + ("" if full else f"; not judged: the ledger's minute of handled ids was not full after {tb:.0f} s"),
                    "flat once the router's index and the ledger's minute of ids are full (issue 9, defect 5)",
                    rc - rb < 2 * MIB if full else None, early_bytes=ra, late_bytes=rb, last_bytes=rc, full=full)]

    await bench.figure("memory", ("memory.flat",), body)


async def cold_start_figure(bench: Bench, s: Sizes) -> None:
    async def body(tmp: Path) -> list[Row]:
        zipapp, source = await coldstart.measure_cold_start(tmp, s.cold_starts)
        z50, z99 = p50_p99(zipapp)
        s50, _ = p50_p99(source)
        return [row("coldstart", "Cold start of the zipapp (`python3 -I supervisor.pyz run`): exec → connected",
                    f"{latency_text(zipapp)} · source tree p50 {s50 * 1000:.0f} ms",
                    "< 1 s (issue) · ≤ 0.5 s (PRODUCT)", z99 < 1.0, p50_s=z50, p99_s=z99, n=len(zipapp))]

    await bench.figure("cold-start", ("coldstart",), body)


# --- main -------------------------------------------------------------------------------


async def run_all(s: Sizes, work: Path, with_mmpy: bool) -> Bench:
    bench = Bench(work)
    await routing_figures(bench, s)
    await first_visible_figure(bench, s)
    await restart_figure(bench, s)
    await streaming_figure(bench, s)
    await throughput_figure(bench, s)
    await echo_figures(bench, s, with_mmpy)
    await workload_figures(bench, s, with_mmpy)
    await memory_figure(bench, s)
    await cold_start_figure(bench, s)
    return bench


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="toy sizes: check every figure is produced")
    parser.add_argument("--no-mmpy", action="store_true", help="skip the mmpy_bot side of the comparison")
    parser.add_argument("--json", type=Path, help="also write the rows, with raw numbers, here")
    parser.add_argument("--profile", type=Path, metavar="DIR", help="run each supervisor under pyinstrument; profiles go to DIR")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, states)")
    args = parser.parse_args(argv)
    world.PROFILE_DIR = args.profile.resolve() if args.profile else None
    sizes = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="supervisor-bench-"))
    started = time.monotonic()
    try:
        bench = trio.run(run_all, sizes, work, not args.no_mmpy)
    finally:
        if args.keep:
            print(f"scratch kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    elapsed = time.monotonic() - started
    title = "Supervisor benchmarks (quick mode: toy sizes, verdicts meaningless)" if args.quick else "Supervisor benchmarks"
    print(table(bench.rows, title=title, elapsed_s=elapsed))
    if args.json:
        args.json.write_text(json.dumps(
            {"quick": args.quick, "elapsed_s": elapsed, "failed": bench.failed,
             "rows": [attrs.asdict(r) for r in bench.rows]}, indent=1))
    if bench.failed:
        print(f"not produced: {', '.join(bench.failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
