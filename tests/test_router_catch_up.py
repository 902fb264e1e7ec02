"""The router's catch-ups (runtime/router.py): one per front end, beside the routing.

A hello catches up the front end that owns its connection id, or every one when none
claims it; while a front end is caught up its posts and hellos wait, and a hello among
them makes one more round; what a catch-up found comes back to the router task, which
alone applies it. Real `Fronts` and `RouterTask`; the front ends, store, registry and desk
are stand-ins that only answer what a catch-up asks and note the commands routed to them.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import attrs
import trio
import trio.testing

from supervisor.chat import ChatUser
from supervisor.chat.fronts import Fronts
from supervisor.core.events import Choice, Hello, Post, Posted
from supervisor.runtime.router import CaughtUp, PostIndex, RouterTask, _catch_up

MM_CONNECTION = "a" * 26  # Mattermost's ids: 26 letters and digits


@attrs.define
class _Link:
    gate: trio.Event  # a catch-up's fetch waits for it: a server that does not answer yet
    missed: list[Post] = attrs.Factory(list)  # what the server has that we did not see
    fetched: list[str] = attrs.Factory(list)
    me: ChatUser = attrs.field(factory=lambda: ChatUser("bot", "bot", is_bot=True))
    max_message_chars: int = 4000
    typing_every_s: float = 5.0
    max_idempotency_key_chars: int = 64

    async def posts_since(self, channel_id: str, since_ms: int) -> list[Post]:
        self.fetched.append(channel_id)
        await self.gate.wait()
        return [p for p in self.missed if p.channel_id == channel_id]

    made: list[Choice] = attrs.Factory(list)  # reactions or buttons on the posts asked about

    async def choices_on(self, channel_id: str, post_id: str) -> list[Choice]:
        return [choice for choice in self.made if choice.post_id == post_id]


@attrs.define
class _Front:
    name: str
    prefix: str
    link: _Link

    clock_ahead_ms = 0

    def owns(self, id_: str) -> bool:
        return id_.startswith(self.prefix) if self.prefix else len(id_) == 26 and id_.isalnum()


def _router(fronts: list[_Front]) -> RouterTask:
    ledger = SimpleNamespace(begin=lambda *_args: None, catch_up_since=lambda _channel: 1, in_flight={})
    store = SimpleNamespace(ledger=ledger, admit=lambda *_args: True)
    registry = SimpleNamespace(allowed={"alice": None}, refs={}, thread_offering=lambda _post: None,
                               offering=lambda: [])
    # A main-place command reaches the desk: noted with the task that routed it.
    commanded: list[tuple[str, str]] = []
    desk = SimpleNamespace(announcing={}, commanded=commanded,
                           command=lambda post, _c: commanded.append((post.id, trio.lowlevel.current_task().name)))
    main_channels = {"m" * 26: "alice", "web": "alice"}  # a Mattermost DM, the web page
    return RouterTask(Fronts(fronts), store, registry, desk,  # type: ignore[arg-type]
                      PostIndex(), main_channels)


def _post_in(channel_id: str, n: int) -> Posted:
    return Posted(Post(f"p{n}", channel_id, "stranger", "hello"))  # a stranger's: ignored once routed


async def test_a_hello_catches_up_its_own_front_end_and_one_nobody_claims_catches_up_all() -> None:
    mm = _Front("mattermost", "", _Link(trio.Event()))
    web = _Front("web", "web", _Link(trio.Event()))
    router = _router([mm, web])
    mm_place = next(c for c in router.main_channels if c != "web")
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            events_send, events_recv = trio.open_memory_channel[Any](10)
            nursery.start_soon(router.run, events_recv, events_send.clone())
            await events_send.send(Hello(MM_CONNECTION))
            await trio.testing.wait_all_tasks_blocked()
            assert mm.link.fetched == [mm_place] and web.link.fetched == []  # Mattermost's only
            await events_send.send(_post_in(mm_place, 1))
            await events_send.send(_post_in("web", 2))
            await trio.testing.wait_all_tasks_blocked()
            assert router._waiting["mattermost"] == [_post_in(mm_place, 1)]  # behind its catch-up
            await events_send.send(Hello(""))  # an id no front end claims: every one
            await trio.testing.wait_all_tasks_blocked()
            assert web.link.fetched == ["web"]
            assert isinstance(router._waiting["mattermost"][-1], Hello)  # one more round, later
            web.link.gate.set()
            mm.link.gate.set()
            await trio.testing.wait_all_tasks_blocked()
            assert mm.link.fetched == [mm_place, mm_place] and web.link.fetched == ["web"]
            assert router._waiting == {}
            nursery.cancel_scope.cancel()


async def test_what_a_catch_up_found_is_applied_by_the_router_task_before_the_posts_that_waited() -> None:
    mm_place = "m" * 26
    missed = [Post(f"missed{n}", mm_place, "alice", "!sessions", create_at=1000 - n) for n in range(2)]
    mm = _Front("mattermost", "", _Link(trio.Event(), missed))
    router = _router([mm])
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            events_send, events_recv = trio.open_memory_channel[Any](10)
            nursery.start_soon(router.run, events_recv, events_send.clone())
            await events_send.send(Hello(MM_CONNECTION))
            await events_send.send(Posted(Post("live", mm_place, "alice", "!sessions", create_at=2000)))
            await trio.testing.wait_all_tasks_blocked()
            assert router.desk.commanded == []  # type: ignore[attr-defined]  # all wait for the fetch
            mm.link.gate.set()
            await trio.testing.wait_all_tasks_blocked()
            commanded = router.desk.commanded  # type: ignore[attr-defined]
            assert [post_id for post_id, _task in commanded] == ["missed1", "missed0", "live"]
            assert all(task.endswith("RouterTask.run") for _post, task in commanded), commanded
            nursery.cancel_scope.cancel()


async def test_a_stop_on_a_rerun_offer_is_not_taken_again_by_a_catch_up_and_one_on_a_request_is() -> None:
    """🛑 stops the running turn from any post of its thread. A catch-up finds every
    reaction ever made on the posts still offering a choice: one on a rerun offer may be
    weeks old and would stop today's turn; one on a pending request answers it."""
    place = "m" * 26
    made = [Choice("alice", "notice", "stop"), Choice("alice", "notice", "rerun"), Choice("alice", "request", "stop")]
    mm = _Front("mattermost", "", _Link(trio.Event(), made=made))
    send, receive = trio.open_memory_channel[Any](1)
    with trio.fail_after(5):
        await _catch_up(mm, {}, [(place, "notice", False), (place, "request", True)], send)  # type: ignore[arg-type]
        found = receive.receive_nowait()
    assert isinstance(found, CaughtUp)
    assert [(c.post_id, c.kind) for c in found.choices] == [("notice", "rerun"), ("request", "stop")]
