"""Figures 1, 2, 4 and 5: routing latency, first-visible latency, memory and CPU, restart.

Each `measure_*` builds its own world (fresh fake server, fresh state directory, the
supervisor as a child process, so its memory and CPU are its own) and tears it down.
Times come from two clocks that are the same clock: the fake server stamps frames and
posts with `time.time()`, the fake agent logs its stdin/stdout lines with `time.time()`.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import attrs
import trio

from benchmarks.drive import ask, warm_up
from benchmarks.world import (
    agent_lines,
    bench_world,
    child_pid,
    configure,
    cpu_seconds,
    is_text_delta,
    prompt_text,
    rss_bytes,
    seed_sessions,
    server_of,
    spawn_serving,
    stop_child,
)
from tests.harness import World


@attrs.frozen
class Sample:
    text: str  # the prompt
    post_id: str
    frame_sent: float  # epoch: the fake server wrote the `posted` frame
    agent_read: float  # epoch: the fake agent read the prompt from stdin

    @property
    def latency(self) -> float:
        return self.agent_read - self.frame_sent


@attrs.frozen
class Routing:
    sessions: int
    samples: list[Sample]
    rss_lazy: int  # bytes, every session restored, no agent started yet
    rss_idle: int  # bytes, every session's agent started and idle
    rss_after: int  # bytes, after the measured prompts
    cpu_per_1000: float  # supervisor CPU seconds per 1,000 prompts routed and answered
    restart: Restart | None = None

    @property
    def latencies(self) -> list[float]:
        return [s.latency for s in self.samples]


@attrs.frozen
class Restart:
    sessions: int
    socket_s: float  # exec -> WebSocket open
    serving_s: float  # exec -> every session answered a message posted while it was down
    agents_started: int  # must be 0: agents start lazily


async def measure_routing(tmp: Path, sessions: int, samples: int, *, restart: bool = False,
                          argv_prefix: list[str] | None = None, pause_s: float = 0.0) -> Routing:
    """Sequential prompts, round robin over `sessions` live sessions, one at a time (the
    next is posted once the previous turn's Done post exists, or `pause_s` after it), so
    each sample is the routing of one event, not a queue. The figure has no pause; a
    pause shows what a prompt to a supervisor that sat idle meanwhile costs."""
    async with bench_world(tmp) as w:
        configure(w)
        roots = await seed_sessions(w, sessions)
        await spawn_serving(w, argv_prefix)
        pid = child_pid(w)
        await trio.sleep(0.5)  # let the catch-up of the start settle
        rss_lazy = rss_bytes(pid)
        await warm_up(w, roots)
        rss_idle = rss_bytes(pid)
        cpu0 = cpu_seconds(pid)
        sent: dict[str, str] = {}  # prompt text -> post id
        with trio.fail_after(60 + samples * 0.5):
            for k in range(samples):
                text = f"route {k:06d}."
                post, _first, _done = await ask(w, roots[k % sessions], text)
                sent[text] = str(post["id"])
                if pause_s:
                    await trio.sleep(pause_s)
        cpu = cpu_seconds(pid) - cpu0
        rss_after = rss_bytes(pid)
        measured = _routing_samples(w, sent)
        outcome = await _restart(w, roots) if restart else None
        return Routing(sessions, measured, rss_lazy, rss_idle, rss_after, cpu / samples * 1000, outcome)


def _routing_samples(w: World, sent: dict[str, str]) -> list[Sample]:
    frames = server_of(w).frame_sent
    found = []
    for line in agent_lines(w):
        if line.event != "stdin":
            continue
        text = prompt_text(line.line)
        if text in sent:
            found.append(Sample(text, sent[text], frames[sent[text]], line.t))
    if len(found) != len(sent):
        raise RuntimeError(f"{len(sent) - len(found)} prompt(s) never reached an agent")
    return found


# --- restart ---------------------------------------------------------------------------


async def measure_restart(tmp: Path, sessions: int) -> Restart:
    """From exec to every one of `sessions` persisted sessions serving, on a fresh state."""
    async with bench_world(tmp) as w:
        configure(w)
        roots = await seed_sessions(w, sessions)
        return await _restart(w, roots)


async def _restart(w: World, roots: list[str]) -> Restart:
    """Stop the supervisor (if running), post `!status` in every thread while it is down,
    exec it, and time until every thread has its answer. `!status` is answered by the
    session itself without starting its agent, so this is "rebound and serving"."""
    server = server_of(w)
    await stop_child(w)
    started_before = len(w.agent_starts())
    bot = server.bot.id
    watchers = [server.watch(root, lambda p: p.user_id == bot and not p.edit) for root in roots]
    for root in roots:
        await w.say("!status", root)
    t0 = await spawn_serving(w)
    socket_s = time.time() - t0
    with trio.fail_after(120):
        answers = [await server.seen(watcher) for watcher in watchers]
    serving_s = max(a.t for a in answers) - t0
    return Restart(len(roots), socket_s, serving_s, len(w.agent_starts()) - started_before)


# --- first visible ---------------------------------------------------------------------


async def measure_first_visible(tmp: Path, sessions: int, samples: int, slow_s: float) -> list[float]:
    """`sessions` threads at once, each a sequence of answers streamed over `slow_s`:
    from the agent writing its first text delta to the post that shows it existing."""
    async with bench_world(tmp) as w:
        configure(w)
        roots = await seed_sessions(w, sessions)
        await spawn_serving(w)
        await warm_up(w, roots)
        first_post: dict[str, float] = {}  # prompt text -> when its first answer post existed
        per_session = max(1, samples // sessions)

        async def thread(i: int, root: str) -> None:
            for j in range(per_session):
                text = f"visible {i:03d}-{j:04d}. [slow {slow_s}]"
                _post, first, _done = await ask(w, root, text)
                first_post[text] = first.t

        with trio.fail_after(60 + per_session * (slow_s + 1) * 2):
            async with trio.open_nursery() as nursery:
                for i, root in enumerate(roots):
                    nursery.start_soon(thread, i, root)
        first_text = _first_deltas(w, set(first_post))
        return [first_post[text] - first_text[text] for text in first_post]


def _first_deltas(w: World, prompts: set[str]) -> dict[str, float]:
    """Prompt text -> when its agent wrote the first text delta of the answer."""
    current: dict[str, str | None] = defaultdict(lambda: None)  # agent pid -> prompt in progress
    found: dict[str, float] = {}
    for line in agent_lines(w):
        if line.event == "stdin":
            text = prompt_text(line.line)
            if text is not None:
                current[line.pid] = text if text in prompts else None
        elif is_text_delta(line.line):
            text = current[line.pid]
            if text is not None and text not in found:
                found[text] = line.t
    missing = prompts - set(found)
    if missing:
        raise RuntimeError(f"no text delta found for {len(missing)} prompt(s)")
    return found
