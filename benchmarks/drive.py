"""Acting as alice: prompts into session threads, and waiting for what the bot makes of them.

Every wait is bounded by the caller's cancel scope or by `fail_after` here.
"""

from __future__ import annotations

from typing import Any

import trio

from benchmarks.bench_server import SeenPost
from benchmarks.world import server_of
from tests.harness import World

TURN_TIMEOUT_S = 30.0


def is_done(post: SeenPost) -> bool:
    """The post or edit that closes a turn: its completion line (`✅ Done · 0.1s · $0.0105`),
    the footer of the answer's last post (or, where it does not fit, a post of its own)."""
    return "✅ Done ·" in post.message


async def ask(w: World, root: str, text: str) -> tuple[dict[str, Any], SeenPost, SeenPost]:
    """Post `text` in thread `root` and wait until its turn is over (at most
    TURN_TIMEOUT_S). Returns (the prompt post, the bot's first post after it, the Done post)."""
    server = server_of(w)
    bot = server.bot.id
    first = server.watch(root, lambda p: p.user_id == bot and not p.edit)
    done = server.watch(root, lambda p: p.user_id == bot and is_done(p))
    post = await w.say(text, root)
    with trio.fail_after(TURN_TIMEOUT_S):
        return post, await server.seen(first), await server.seen(done)


async def warm_up(w: World, roots: list[str], *, parallel: int = 8) -> None:
    """One prompt per session, so every agent is running and idle afterwards."""
    limit = trio.CapacityLimiter(parallel)

    async def one(n: int, root: str) -> None:
        async with limit:
            await ask(w, root, f"warm-up {n}")

    with trio.fail_after(60 + len(roots)):
        async with trio.open_nursery() as nursery:
            for n, root in enumerate(roots):
                nursery.start_soon(one, n, root)

