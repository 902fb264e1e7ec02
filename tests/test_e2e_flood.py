"""Issue 9, defect 7: a flood of posts into one thread neither crashes the supervisor nor
drops a post or a stop, and other threads keep being served. A flood of an agent's output
leaves what the person sends room beside it.

To fill a session's inbox for sure, the disk is made to stall (the store's write waits on a
gate) while the session waits for a durable handled mark: the router keeps routing what
the server sends, the session cannot take it, and its inbox overflows."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

import supervisor.runtime.store as store_module
from supervisor.runtime.session_inbox import AGENT_OUTPUT_ROOM, INBOX_HEADROOM, INBOX_SIZE
from tests.harness import World, world

FLOOD = 1500  # more than a session's inbox holds


class StalledDisk:
    """While closed, every state write waits (in its worker thread) until it opens."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.waiting = threading.Event()

    def write(self, journal: store_module.Journal, line: bytes) -> None:
        if not self.open.is_set():
            self.waiting.set()
            self.open.wait(60)
        REAL_APPEND(journal, line)


REAL_APPEND = store_module.append_line


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[StalledDisk]:
    stalled = StalledDisk()
    monkeypatch.setattr(store_module, "append_line", stalled.write)  # a commit's write
    yield stalled
    stalled.open.set()


def _socket_backlog(w: World) -> int:
    """Events the fake server has queued for the supervisor's WebSocket, not yet sent."""
    return max((len(conn.pending) for conns in w.server.hub.by_user.values() for conn in conns), default=0)


def _interrupts(w: World) -> int:
    return sum(
        1 for line in w.agent_lines()
        if line.get("event") == "stdin" and line.get("line", {}).get("request", {}).get("subtype") == "interrupt"
    )


async def test_a_flood_into_one_thread_loses_no_post_and_no_stop(tmp_path: Path, disk: StalledDisk) -> None:
    async with world(tmp_path) as w:
        w.configure(mattermost={"requests_per_second": 1000})
        supervisor = await w.start()
        # A disk that proved slow before (see SLOW_COMMIT_S): its commits go through a
        # worker thread, where the one below stalls while the event loop goes on.
        supervisor.store.commits_in_thread, supervisor.store.may_return_to_loop = True, False
        root = await w.new_session("flooded")
        other = await w.new_session("calm")
        await w.say("[slow 60] a long turn", root)
        await w.wait_for(lambda: supervisor.tasks[root].core.turn is not None, 20)

        disk.open.clear()
        await w.say("!status", root)  # its handled mark waits for the stalled disk
        await trio.to_thread.run_sync(disk.waiting.wait, 20)
        admitted = sum(len(v) for v in supervisor.store.ledger.in_flight.values())
        for n in range(FLOOD):
            await w.say(f"flood {n}", root)
            if n % 100 == 99:  # as fast as the socket takes them, but not faster: a server
                await w.wait_for(lambda: _socket_backlog(w) < 50, 20)  # drops a slow socket
        await w.react(root, "octagonal_sign")
        await w.say("meanwhile elsewhere", other)
        await w.wait_for(
            lambda: sum(len(v) for v in supervisor.store.ledger.in_flight.values()) >= admitted + FLOOD + 1, 60)
        await trio.sleep(0.5)  # the reaction is routed after the posts before it
        disk.open.set()

        try:
            await w.wait_for(lambda: _interrupts(w) >= 1, 30)
        except trio.TooSlowError:
            t = supervisor.tasks[root]
            raise AssertionError(f"no interrupt: turn={t.core.turn} queue={len(t.core.queue)} state={t.core.state} "
                                 f"inbox={t.inbox_send.statistics()}") from None
        await w.answered(other, "echo #1: meanwhile elsewhere", timeout=30)
        task = supervisor.tasks[root]
        # every flood post reached the session, in order: queued behind the interrupted turn
        await w.wait_for(lambda: sum(1 for p in task.core.queue if p.text.startswith("flood ")) +
                         sum(1 for ps in w.prompts_by_process().values() for p in ps if p.startswith("flood ")) >= FLOOD, 30)
        queued = [p.text for p in task.core.queue if p.text.startswith("flood ")]
        sent = [p for ps in w.prompts_by_process().values() for p in ps if p.startswith("flood ")]
        assert sent + queued == [f"flood {n}" for n in range(FLOOD)]
        assert w.supervisor is supervisor, "the supervisor is still the one that started"


async def test_a_flood_of_agent_output_leaves_room_for_the_person(tmp_path: Path, disk: StalledDisk) -> None:
    """The agent prints without end while its session is held up (its disk stalls): its
    output fills the session's inbox only to its share, then waits with the agent; the room
    left is for what the person writes meanwhile (a 🛑 and a prompt get in beside it) and
    for the session's own reports. Once the disk is back, the 🛑 is taken in its turn: it
    stops the flood, and the prompt runs."""
    async with world(tmp_path) as w:
        supervisor = await w.start()
        supervisor.store.commits_in_thread, supervisor.store.may_return_to_loop = True, False  # its stall below holds the session only
        root = await w.new_session("flooding")
        await w.say("[flood] without end", root)
        await w.wait_for(lambda: supervisor.tasks[root].core.turn is not None, 20)
        inbox = supervisor.tasks[root].inbox_send.statistics

        disk.open.clear()
        await w.say("!status", root)  # its handled mark waits for the stalled disk
        await trio.to_thread.run_sync(disk.waiting.wait, 20)
        await w.wait_for(lambda: inbox().current_buffer_used >= AGENT_OUTPUT_ROOM, 20)
        await trio.sleep(0.5)  # time for the flood to take more, if it would
        flooded = inbox().current_buffer_used  # the flood's, and perhaps a report of the poster's
        # Its share, and perhaps a few reports of the session's own tasks beside it.
        assert flooded <= AGENT_OUTPUT_ROOM + 5, f"the flood took {flooded} of {INBOX_SIZE} places"
        await w.react(root, "octagonal_sign")
        await w.say("after the flood", root)
        await w.wait_for(lambda: inbox().current_buffer_used >= flooded + 2, 20)
        assert inbox().current_buffer_used < INBOX_SIZE - INBOX_HEADROOM
        disk.open.set()

        await w.wait_for(lambda: _interrupts(w) >= 1, 30)
        await w.answered(root, "echo #2: after the flood", timeout=30)
