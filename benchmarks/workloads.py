"""The side-by-side workloads of issue 13 (W1, W2) and the long-run memory figure.

W1: one thread, prompts one after another; the agent's turn takes ~203 ms (the fake agent
streams its answer in ten deltas over 0.2 s). Measured: from the agent writing its result
(the end of its turn, the fake agent's log `t`) to the post or edit that makes the whole
answer visible (its completion footer included), and REST requests per answer.

W2: ten threads, ten prompts each, all posted at once: answers per second from the first
prompt to the last answer whole, with the ~203 ms agent and with an instant one; REST
requests per answer; duplicate answer posts. mmpy_bot gets the same W2 load (it answers
each post at once: no agent).

Memory: ten sessions' closed loop of turns with the instant agent; the supervisor's RSS
after 1,000 turns and after 10,000 (issue 9: a supervisor running for weeks stays flat).
Everything runs with the product's default configuration.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import attrs
import trio

from benchmarks.bench_server import BenchServer, SeenPost
from benchmarks.drive import is_done, warm_up
from benchmarks.load import by_bot, echo_complete
from benchmarks.world import (
    agent_lines,
    bench_world,
    child_pid,
    configure,
    prompt_text,
    rss_bytes,
    seed_sessions,
    server_of,
    spawn_serving,
)
from tests.harness import World

AGENT_203MS = "[slow 0.2]"  # ten deltas over 0.2 s: the turn takes ~203 ms


def whole(post: SeenPost, token: str) -> bool:
    """The answer to `token`, with its completion line: the whole answer is visible."""
    return token in post.message and is_done(post)


@attrs.frozen
class W1:
    visible: list[float]  # seconds: the agent's end of turn -> the whole answer visible
    requests_per_answer: float
    duplicates: int


async def measure_w1(tmp: Path, prompts: int) -> W1:
    async with bench_world(tmp) as w:
        configure(w)
        (root,) = await seed_sessions(w, 1)
        await spawn_serving(w)
        await warm_up(w, [root])
        server = server_of(w)
        bot = server.bot.id
        shown: dict[str, float] = {}
        requests0, posts0 = server.rest_requests(), len(server.posts)
        with trio.fail_after(60 + prompts * 2):
            for k in range(prompts):
                token = f"w1 {k:05d}."
                watcher = server.watch(root, by_bot(bot, whole, token))
                await w.say(f"{token} {AGENT_203MS}", root)
                shown[token] = (await server.seen(watcher)).t
        requests = server.rest_requests() - requests0
        ended = _turn_ends(w, set(shown))
        return W1(
            visible=[shown[token] - ended[token] for token in shown],
            requests_per_answer=requests / prompts,
            duplicates=_duplicates(server, posts0),
        )


def _turn_ends(w: World, tokens: set[str]) -> dict[str, float]:
    """Prompt token -> when its agent wrote the turn's result line."""
    current: dict[str, str] = {}  # agent pid -> token of the prompt in progress
    found: dict[str, float] = {}
    for line in agent_lines(w):
        if line.event == "stdin":
            text = prompt_text(line.line) or ""
            current[line.pid] = next((t for t in tokens if text.startswith(t)), "")
        elif line.line.get("type") == "result" and current.get(line.pid):
            found.setdefault(current[line.pid], line.t)
    missing = tokens - set(found)
    if missing:
        raise RuntimeError(f"no result line for {len(missing)} prompt(s)")
    return found


def _duplicates(server: BenchServer, since: int) -> int:
    """Answers that appear in more than one bot post (creates, not edits)."""
    bot = server.bot.id
    keys = [(p.root_id, p.message.split(" (", 1)[0]) for p in server.posts[since:]
            if p.user_id == bot and not p.edit and p.message.startswith("echo")]
    return len(keys) - len(set(keys))


@attrs.frozen
class W2:
    answers: int
    elapsed_s: float
    requests: int
    duplicates: int

    @property
    def per_second(self) -> float:
        return self.answers / self.elapsed_s

    @property
    def requests_per_answer(self) -> float:
        return self.requests / self.answers


async def measure_w2(tmp: Path, threads: int, per_thread: int, directive: str) -> W2:
    async with bench_world(tmp) as w:
        configure(w, agent_log=False)
        roots = await seed_sessions(w, threads)
        await spawn_serving(w)
        await warm_up(w, roots)
        server = server_of(w)
        bot = server.bot.id
        return await _all_at_once(w, server, roots, per_thread, directive, lambda token: by_bot(bot, whole, token))


async def measure_mmpy_w2(tmp: Path, python: Path, threads: int, per_thread: int) -> W2:
    from benchmarks.compare import _end_group, _start_mmpy

    async with bench_world(tmp) as w:
        server = server_of(w)
        roots = [str((await w.say(f"thread {i}"))["id"]) for i in range(threads)]
        proc = _start_mmpy(python, server.url, server.bot_token, tmp)
        try:
            with trio.fail_after(30):
                await server.wait_for_websocket()
            bot = server.bot.id
            return await _all_at_once(
                w, server, roots, per_thread, "",
                lambda token: by_bot(bot, lambda post, t: t in post.message, token),
            )
        finally:
            _end_group(proc)


async def _all_at_once(w: World, server: BenchServer, roots: list[str], per_thread: int, directive: str,
                       predicate: object) -> W2:
    watchers = []
    requests0, posts0 = server.rest_requests(), len(server.posts)
    t0 = time.time()
    for j in range(per_thread):
        for i, root in enumerate(roots):
            token = f"w2 {i:03d}-{j:04d}."
            watchers.append(server.watch(root, predicate(token)))  # type: ignore[operator]
            await w.say(f"{token} {directive}".strip(), root)
    with trio.fail_after(60 + len(watchers)):
        seen = [await server.seen(watcher) for watcher in watchers]
    return W2(
        answers=len(seen),
        elapsed_s=max(post.t for post in seen) - t0,
        requests=server.rest_requests() - requests0,
        duplicates=_duplicates(server, posts0),
    )


@attrs.frozen
class Memory:
    turns: tuple[int, ...]
    rss: tuple[int, ...]  # bytes after each
    elapsed_s: tuple[float, ...]  # since the first measured turn, at each


async def measure_memory(tmp: Path, threads: int, checkpoints: tuple[int, ...]) -> Memory:
    """`threads` sessions, instant agent, closed loop: RSS after each checkpoint's number
    of turns."""
    from benchmarks.load import closed_loop, supervisor_turn_over

    async with bench_world(tmp) as w:
        configure(w, agent_log=False)
        roots = await seed_sessions(w, threads)
        await spawn_serving(w)
        await warm_up(w, roots)
        server = server_of(w)
        pid = child_pid(w)
        sizes: list[int] = []
        elapsed: list[float] = []
        started = time.monotonic()
        steps = [b - a for a, b in itertools.pairwise((0, *checkpoints))]
        for tag, turns in ((f"m{k}", step) for k, step in enumerate(steps)):
            with trio.fail_after(60 + turns * 0.2):
                await closed_loop(server, w.say, roots, turns // threads, pid,
                                  turn_over=supervisor_turn_over, complete=echo_complete, tag=tag)
            await trio.sleep(0.5)  # the answers' last calls, and a collection
            sizes.append(rss_bytes(pid))
            elapsed.append(time.monotonic() - started)
        return Memory(checkpoints, tuple(sizes), tuple(elapsed))
