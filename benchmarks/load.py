"""Figures 3 and 6: streaming under the server's rate limit, and end-to-end throughput.

Also the closed-loop driver the mmpy_bot comparison shares: each thread posts its next
prompt as soon as the bot is done with the previous one, and an answer counts once its
whole text is visible in the thread (an edit that completes it counts, not the first post).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import attrs
import trio

from benchmarks.bench_server import BenchServer, SeenPost
from benchmarks.drive import is_done, warm_up
from benchmarks.world import (
    DEFAULT_EDIT_INTERVAL_MS,
    agent_lines,
    bench_world,
    child_pid,
    configure,
    cpu_seconds,
    seed_sessions,
    server_of,
    spawn_serving,
)
from tests.harness import World

MAX_POST_CHARS = 16_383  # a post longer than this continues in the next one


# --- the closed loop -------------------------------------------------------------------


@attrs.frozen
class Loop:
    answers: int
    elapsed_s: float  # first prompt posted -> last answer complete
    cpu_s: float  # the bot process's CPU over the run
    own_cpu_s: float  # this process's CPU (the fake server and the driver) over the run
    requests: int  # REST requests the bot made during the run
    duplicates: int  # answers that appeared more than once

    @property
    def per_second(self) -> float:
        return self.answers / self.elapsed_s


TurnOver = Callable[[SeenPost, str], bool]  # (post, prompt token) -> the bot is done with it
Complete = Callable[[SeenPost, str], bool]  # (post, prompt token) -> its answer is whole


def echo_complete(post: SeenPost, token: str) -> bool:
    """The fake agent's echo (`echo #N: <prompt> (earlier: ...)`) with all of its text and
    the completion footer below it."""
    answer, footer, _ = post.message.partition("\n\n✅ Done ·")
    return token in answer and answer.rstrip().endswith(")") and bool(footer)


def supervisor_turn_over(post: SeenPost, token: str) -> bool:
    return is_done(post)


def by_bot(bot: str, check: Complete, token: str) -> Callable[[SeenPost], bool]:
    """A watch predicate: a post or edit by the bot that `check`s out for `token`."""
    return lambda post: post.user_id == bot and check(post, token)


async def closed_loop(server: BenchServer, say: Callable[[str, str], object], roots: list[str],
                      per_thread: int, pid: int, *, turn_over: TurnOver, complete: Complete,
                      tag: str) -> Loop:
    """Bounded by the caller's cancel scope."""
    bot = server.bot.id
    finished: list[float] = []
    requests0 = server.rest_requests()
    posts0 = len(server.posts)
    cpu0, own0 = cpu_seconds(pid), time.process_time()

    async def thread(i: int, root: str, nursery: trio.Nursery) -> None:
        for j in range(per_thread):
            token = f"{tag}{i:03d}-{j:05d}."
            whole = server.watch(root, by_bot(bot, complete, token))
            over = server.watch(root, by_bot(bot, turn_over, token))
            await say(token, root)  # type: ignore[misc]
            await server.seen(over)
            nursery.start_soon(_record, server, whole, finished)

    t0 = time.time()
    async with trio.open_nursery() as nursery:
        for i, root in enumerate(roots):
            nursery.start_soon(thread, i, root, nursery)
    elapsed = max(finished) - t0
    # An answer's first post starts `echo #N` (the supervisor) or `echo: <prompt>` (mmpy_bot).
    answers = [p for p in server.posts[posts0:] if p.user_id == bot and not p.edit]
    keys = [(p.root_id, p.message.split(" (", 1)[0]) for p in answers if p.message.startswith("echo")]
    return Loop(
        answers=len(finished),
        elapsed_s=elapsed,
        cpu_s=cpu_seconds(pid) - cpu0,
        own_cpu_s=time.process_time() - own0,
        requests=server.rest_requests() - requests0,
        duplicates=len(keys) - len(set(keys)),
    )


async def _record(server: BenchServer, watcher: object, finished: list[float]) -> None:
    post = await server.seen(watcher)  # type: ignore[arg-type]
    finished.append(post.t)


# --- figure 6: throughput --------------------------------------------------------------


async def measure_throughput(tmp: Path, sessions: int, per_session: int, *,
                             edit_interval_ms: int = DEFAULT_EDIT_INTERVAL_MS,
                             argv_prefix: list[str] | None = None) -> Loop:
    """`sessions` threads, an instant agent, closed loop: answers per second end to end."""
    async with bench_world(tmp) as w:
        configure(w, agent_log=False, edit_interval_ms=edit_interval_ms)
        roots = await seed_sessions(w, sessions)
        await spawn_serving(w, argv_prefix)
        await warm_up(w, roots)
        with trio.fail_after(60 + sessions * per_session * 0.1):
            return await closed_loop(
                server_of(w), w.say, roots, per_session, child_pid(w),
                turn_over=supervisor_turn_over, complete=echo_complete, tag="tp",
            )


# --- figure 3: streaming under the rate limit ------------------------------------------


@attrs.frozen
class Streaming:
    sessions: int
    rate: float
    burst: int
    requests: int  # REST requests the supervisor sent from the prompts to the last answer
    rate_limited: int  # 429s it got
    complete_s: float  # prompts posted -> every answer whole in its thread
    agents_done_s: float  # prompts posted -> the last agent finished writing
    min_requests: int  # requests no renderer can do without (see measure_streaming)
    lower_bound_s: float  # what the server's limit allows

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.complete_s


async def measure_streaming(tmp: Path, sessions: int, chars: int, deltas: int, slow_s: float,
                            *, rate: float = 10, burst: int = 100) -> Streaming:
    """`sessions` answers streaming at once; the server allows `rate` req/s (burst
    `burst`), the supervisor runs with the product's defaults (no cap of its own: it
    follows the limits the server announces; 700 ms edits).

    The least any renderer needs per answer: one create per post, plus one request more,
    because the first post must show before the answer is whole (an edit that completes it,
    or a completion post of its own)."""
    async with bench_world(tmp) as w:
        configure(w, edit_interval_ms=DEFAULT_EDIT_INTERVAL_MS)
        roots = await seed_sessions(w, sessions)
        server = server_of(w)
        server.rate_limit(rate, burst=burst)
        await spawn_serving(w)
        await trio.sleep(server.rest_requests() / rate + 0.2)  # the start's own requests: refill
        requests0, limited0 = server.rest_requests(), server.stats.rate_limited
        t0 = time.time()
        bot = server.bot.id
        dones = [server.watch(root, lambda p: p.user_id == bot and is_done(p)) for root in roots]
        for n, root in enumerate(roots):
            await w.say(f"stream {n:03d}. [long {chars}] [deltas {deltas}] [slow {slow_s}]", root)
        with trio.fail_after(60 + sessions * chars / 16_000 / rate * 4):
            for done in dones:
                await server.seen(done)
            results = await _whole_answers(w, roots)
        complete = max(_last_bot_event(server, root) for root in roots) - t0
        agents_done = max(t for t, _ in results.values()) - t0
        min_requests = sum(math.ceil(len(text) / MAX_POST_CHARS) + 1 for _, text in results.values())
        return Streaming(
            sessions=sessions, rate=rate, burst=burst,
            requests=server.rest_requests() - requests0,
            rate_limited=server.stats.rate_limited - limited0,
            complete_s=complete,
            agents_done_s=agents_done,
            min_requests=min_requests,
            lower_bound_s=max(agents_done, (min_requests - burst) / rate),
        )


async def _whole_answers(w: World, roots: list[str]) -> dict[str, tuple[float, str]]:
    """Wait until every thread shows its agent's whole answer; root -> (when the agent
    wrote its result, the answer text)."""
    results = _results_by_cwd(w)
    by_root = {root: results[str(w.work / f"s{n}")] for n, root in enumerate(roots)}
    server = server_of(w)
    while True:
        missing = [r for r, (_, text) in by_root.items() if not _shows(server, r, text)]
        if not missing:
            return by_root
        await trio.sleep(0.1)


def _shows(server: BenchServer, root: str, answer: str) -> bool:
    latest: dict[str, str] = {}
    for post in server.bot_posts_in(root):
        latest[post.id] = post.message
    visible = "".join("".join(text.split()) for text in latest.values())
    return "".join(answer.split()) in visible


def _last_bot_event(server: BenchServer, root: str) -> float:
    return max(p.t for p in server.bot_posts_in(root))


def _results_by_cwd(w: World) -> dict[str, tuple[float, str]]:
    """Agent working directory -> (when it wrote its last result, that result's text)."""
    cwd_of = {str(start["log"]): str(start["cwd"]) for start in w.agent_starts()}
    found: dict[str, tuple[float, str]] = {}
    for line in agent_lines(w):
        if line.event == "stdout" and line.line.get("type") == "result":
            found[cwd_of[line.pid]] = (line.t, str(line.line.get("result", "")))
    return found
