"""Defect 9: more than 1,000 changes in a channel while the supervisor is down.

The server's catch-up query (`?since=`) answers with at most 1000 of the changes, and
which 1000 is the database's choice. Here the fake answers with the newest 1000, so the
first prompt posted while the supervisor was down is not among them: it must still be
handled, all prompts in the order they were posted, each once.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import trio

from tests.harness import world

EDITS_BETWEEN = 600  # each edit adds a row (the edit-history copy) that `since` returns


async def test_more_than_1000_changes_while_down_are_all_handled_in_order_once(
    tmp_path: Path,
) -> None:
    async with world(tmp_path) as w:
        await w.start()
        root = await w.new_session("alpha")
        first = await w.say("first", root)
        await w.answered(root, "echo #1: first")
        await w.settled(root)
        await w.stop()

        w.server.store.since_pick = "newest"
        with trio.fail_after(60):
            for n in range(1, 4):
                await w.say(f"down {n}", root)
                if n < 3:
                    for k in range(EDITS_BETWEEN):
                        await w.server.user_edit("alice", first["id"], f"first, take {n}.{k}")
        rows = [w.server.store.posts[i] for i in w.server.store.channel_rows[w.dm]]
        changed = [row for row in rows if row["update_at"] > first["update_at"]]
        assert len(changed) > 1000

        await w.start()
        await w.answered(root, "echo #4: down 3", timeout=30)
        # The sentinel: answered after anything the catch-up could still have sent.
        await w.say("after", root)
        text = await w.answered(root, "echo #5: after", timeout=30)
        await w.settled(root)
        answers = re.findall(r"echo #(\d+): (down \d|after)", w.thread_text(root))
        assert answers == [("2", "down 1"), ("3", "down 2"), ("4", "down 3"), ("5", "after")], text


@pytest.mark.parametrize("ahead_ms", [-600_000, 600_000], ids=["server behind", "server ahead"])
async def test_a_first_start_places_its_history_by_the_servers_clock(tmp_path: Path, ahead_ms: int) -> None:
    """On a network without time sync the server stamps posts by its own clock, minutes
    off ours. At a first start, what came before it is history by that clock: a server
    behind once had every post of a new place dropped as seen before (for as long as it
    was behind), a server ahead had its last minutes' posts answered as new."""
    with trio.fail_after(60):
        async with world(tmp_path) as w:
            w.server.set_clock(ahead_ms=ahead_ms - 120_000)  # two minutes before the start
            (w.work / "old").mkdir(parents=True)
            await w.say(f"!new old {w.work / 'old'}")
            w.server.set_clock(ahead_ms=ahead_ms)
            await w.start()
            await w.new_session("new")
            assert w._root_of("old") is None
