"""The update source: the offset passes only confirmed updates; backlog first; 409 said once."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
from pathlib import Path

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor.chat import CannotStart
from supervisor.chat.telegram.backlog import Backlog
from supervisor.chat.telegram.calls import Conflict
from supervisor.chat.telegram.client import BotApi
from supervisor.chat.telegram.codec import Update
from supervisor.chat.telegram.memory import Memory
from supervisor.chat.telegram.updates import Ledger, UpdateSource
from supervisor.core.backoff import Backoff
from tests.fakes.telegram_botapi import TOKEN, FakeBotApi, running

USER = 4242


def upd(update_id: int, empty: bool = False) -> Update:
    from supervisor.chat.telegram.codec import Chat, Message

    if empty:
        return Update(update_id)
    return Update(update_id, message=Message(update_id, 1, Chat(USER, "private"), text="x"))


# --- the ledger, against a model of Telegram's queue ----------------------------------------

OPS = st.lists(
    st.tuples(st.sampled_from(["arrive", "send", "answer", "confirm", "empty"]), st.integers(0, 50)),
    max_size=80,
)


@given(OPS, st.integers(1, 5))
def test_ledger_never_lets_the_offset_pass_an_unconfirmed_update(
    ops: list[tuple[str, int]], limit: int
) -> None:
    ledger = Ledger()
    queue: list[tuple[int, bool]] = []  # the server's unconfirmed updates (id, empty)
    next_id = 1000
    in_flight: tuple[int, list[tuple[int, bool]]] | None = None  # (mark, server's answer)
    handed: list[int] = []
    confirmed: set[int] = set()
    empties: set[int] = set()

    def send() -> tuple[int, list[tuple[int, bool]]]:
        nonlocal queue
        poll = ledger.poll()
        if poll.offset is not None:
            forgotten = [uid for uid, _ in queue if uid < poll.offset]
            assert set(forgotten) <= confirmed | empties  # the heart of it
            queue = [(uid, e) for uid, e in queue if uid >= poll.offset]
        return poll.mark, queue[:limit]

    def answer(mark: int, batch: list[tuple[int, bool]]) -> None:
        for update in ledger.accept([upd(uid, e) for uid, e in batch], mark):
            assert update.update_id not in handed  # handed out once
            handed.append(update.update_id)

    for op, pick in ops:
        if op in ("arrive", "empty"):
            next_id += 1
            queue.append((next_id, op == "empty"))
            if op == "empty":
                empties.add(next_id)
        elif op == "send" and in_flight is None:
            in_flight = send()
        elif op == "answer" and in_flight is not None:
            answer(*in_flight)
            in_flight = None
        elif op == "confirm":
            open_ids = [uid for uid in handed if uid not in confirmed]
            if open_ids:
                chosen = open_ids[pick % len(open_ids)]
                assert ledger.confirm(chosen)
                assert not ledger.confirm(chosen)  # idempotent
                confirmed.add(chosen)
    if in_flight is not None:
        answer(*in_flight)
    # Drain: confirm everything, poll until the server has nothing left.
    for _ in range(len(queue) + 3):
        for uid in handed:
            ledger.confirm(uid)
            confirmed.add(uid)
        answer(*send())
    assert queue == []
    assert sorted(handed) == sorted(set(range(1001, next_id + 1)) - empties)
    assert ledger.unconfirmed == 0


def test_ledger_ignores_what_it_never_handed_out() -> None:
    ledger = Ledger(offset=5)
    assert ledger.confirm(5) is False
    assert ledger.poll().offset == 5


def test_ledger_out_of_order_confirmation_waits_for_the_gap() -> None:
    ledger = Ledger(offset=10)
    mark = ledger.poll().mark
    assert [u.update_id for u in ledger.accept([upd(10), upd(11), upd(12)], mark)] == [10, 11, 12]
    ledger.confirm(12)
    ledger.confirm(11)
    assert ledger.poll().offset == 10
    ledger.confirm(10)
    assert ledger.poll().offset == 13


# --- the source, against the fake ---------------------------------------------------------


async def collect(
    receive: trio.MemoryReceiveChannel[Update], count: int
) -> list[Update]:
    return [await receive.receive() for _ in range(count)]


async def test_backlog_first_in_order_and_confirmed_only_after_handling() -> None:
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            fake.set_webhook("https://old.example/hook")  # a webhook from an earlier life
            backlog = [fake.user_sends(USER, f"while down {i}") for i in range(5)]
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20, ahead_poll_s=0.2)
            handled_at: dict[int, float] = {}
            send, receive = trio.open_memory_channel[Update](0)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)  # started at once: the webhook goes first
                await fake.wait_until(lambda: fake.calls_of("deleteWebhook"))
                deletes = fake.calls_of("deleteWebhook")
                assert len(deletes) == 1 and "drop_pending_updates" not in deletes[0].params
                got = await collect(receive, 5)
                assert [u.message.text for u in got if u.message] == [m["text"] for m in backlog]
                # Nothing handled yet: polled again, nothing may be confirmed.
                await fake.wait_until(lambda: len(fake.calls_of("getUpdates")) >= 2)
                assert fake.confirmed == {} and len(fake.pending_updates()) == 5
                for update in got:
                    handled_at[update.update_id] = trio.current_time()
                    source.confirm(update.update_id)
                # A live message, long-polled: it wakes the waiting poll.
                fake.user_sends(USER, "live")
                (live,) = await collect(receive, 1)
                assert live.message is not None and live.message.text == "live"
                assert set(fake.confirmed) == set(handled_at)
                for update_id, (_seq, confirmed_at) in fake.confirmed.items():
                    assert confirmed_at >= handled_at[update_id]
                assert source.offset == got[-1].update_id + 1
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_unconfirmed_update_blocks_the_offset_but_not_newer_updates() -> None:
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            # Alone (no backlog holds the slow one): stuck, it polls once per poll_s.
            source = UpdateSource(api, poll_s=1, ahead_poll_s=0.1)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                fake.user_sends(USER, "slow one")
                (slow,) = await collect(receive, 1)
                fake.user_sends(USER, "next")
                (following,) = await collect(receive, 1)  # fetched ahead, once
                source.confirm(following.update_id)
                await fake.wait_until(lambda: len(fake.calls_of("getUpdates")) >= 4)
                assert fake.confirmed == {}  # the slow one still holds the offset
                assert len(fake.delivered[slow.update_id]) >= 2  # fetched again, not handed out
                assert receive.statistics().current_buffer_used == 0
                source.confirm(slow.update_id)
                await fake.wait_until(lambda: len(fake.confirmed) == 2)
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_an_update_waiting_for_the_core_is_held_and_polling_goes_back_to_long_polls(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20, ahead_poll_s=0.1)
            backlog = Backlog(source, Memory.open(tmp_path))
            remembered = tmp_path / "telegram.json"
            send, receive = trio.open_memory_channel[Update](0)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                nursery.start_soon(backlog.keep_offset)
                fake.user_sends(USER, "queued behind a long turn")
                queued = await receive.receive()
                backlog.handed("queued", queued)  # as the front end does; the core waits
                await backlog.hold_if_stuck()
                # Held durably, then let go by Telegram: the offset passes it.
                await fake.wait_until(lambda: queued.update_id in fake.confirmed)
                held = json.loads(remembered.read_text())["held"]
                assert [u["update_id"] for u in held] == [queued.update_id]

                def polls() -> int:
                    return sum(method == "getUpdates" for _, method in fake.arrived)

                # Before: a poll with timeout 0 every ahead_poll_s while it waited, each
                # answered at once with it. Now: one long poll over this quiet time.
                before = polls()
                await trio.sleep(2)
                assert polls() - before <= 1
                fake.user_sends(USER, "newer")
                newer = await receive.receive()  # the long poll brings it
                assert newer.message is not None and newer.message.text == "newer"
                backlog.confirm(newer.update_id)
                backlog.handled("queued")  # the core took it at last: it leaves the memory
                while json.loads(remembered.read_text())["held"]:
                    await trio.sleep(0.02)
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_an_update_held_before_a_kill_and_given_again_by_telegram_does_not_hold_up_the_offset(
    tmp_path: Path,
) -> None:
    with trio.fail_after(20):
        async with running() as fake:
            fake.add_user(USER)
            fake.user_sends(USER, "queued when the kill came")
            (raw,) = fake.pending_updates()
            # Held (telegram.json written), then killed before a poll let Telegram forget it.
            memory = Memory.open(tmp_path)
            memory.held = [raw]
            memory.changed()
            await memory.commit()
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20, ahead_poll_s=0.1)
            backlog = Backlog(source, Memory.open(tmp_path))
            send, receive = trio.open_memory_channel[Update](0)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                nursery.start_soon(backlog.keep_offset)
                (held,) = backlog.held_before()
                backlog.handed("queued", held)  # the core waits with it
                again = await receive.receive()
                assert again.update_id == held.update_id
                backlog.handed("queued", again)  # the same post: the core skips it
                await fake.wait_until(lambda: held.update_id in fake.confirmed)
                fake.user_sends(USER, "/stop")
                stop = await receive.receive()
                assert stop.message is not None and stop.message.text == "/stop"
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_updates_with_nothing_for_us_are_confirmed_by_the_source(caplog: pytest.LogCaptureFixture) -> None:
    """A kind we do not use, silently; one we cannot read (it may be a person's message)
    is said in the log, with why, and passed over."""
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            unreadable = fake.add_update({"message": {"message_id": "not a number"}})
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                fake.user_sends(USER, "after it")
                (update,) = await collect(receive, 1)
                assert update.message is not None and update.message.text == "after it"
                source.confirm(update.update_id)
                await fake.wait_until(lambda: update.update_id in fake.confirmed)
                assert unreadable in fake.confirmed
                nursery.cancel_scope.cancel()
            said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
            assert [line for line in said if f"update {unreadable} " in line and "message_id" in line], said
            await api.aclose()


async def test_a_restart_gets_again_what_was_not_confirmed_to_telegram() -> None:
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            for i in range(3):
                fake.user_sends(USER, f"m{i}")
            api = BotApi(TOKEN, api_url=fake.url)
            first = UpdateSource(api, poll_s=20)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(first.run, send)
                got = await collect(receive, 3)
                first.confirm(got[0].update_id)
                first.confirm(got[1].update_id)
                await fake.wait_until(lambda: len(fake.confirmed) == 2)
                nursery.cancel_scope.cancel()  # killed before m2 was handled
            assert got[2].update_id not in fake.confirmed
            second = UpdateSource(api, poll_s=20)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(second.run, send)
                (again,) = await collect(receive, 1)
                assert again.update_id == got[2].update_id
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_a_second_poller_is_reported_once_and_not_fought(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="supervisor.telegram")
    with trio.fail_after(20):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            other = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20, conflict_backoff=Backoff(base=0.3, cap=0.3, floor=0.3),
                                  rng=random.Random(3))  # fmt: skip
            send, receive = trio.open_memory_channel[Update](10)

            def ours() -> int:  # our completed polls (the other one asks for limit 1)
                return len([c for c in fake.calls_of("getUpdates") if c.params.get("limit") == 100])

            async def other_program() -> None:
                with trio.move_on_after(2.0):
                    while True:  # polls without pause, as a second deployment would
                        with contextlib.suppress(Conflict):
                            await other.get_updates(None, poll_s=1, allowed_updates=["poll"], limit=1)

            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                await fake.wait_until(lambda: ("getUpdates" in {m for _, m in fake.arrived}))
                before = ours()
                await other_program()
                assert source.conflict
                assert 1 <= ours() - before <= 10  # backed off, not a tight loop
                fake.user_sends(USER, "hello again")
                (update,) = await collect(receive, 1)
                assert update.message is not None and update.message.text == "hello again"
                assert not source.conflict
                nursery.cancel_scope.cancel()
            await api.aclose()
            await other.aclose()
    said = [r.getMessage() for r in caplog.records if "409" in r.getMessage()]
    assert len(said) == 1 and "another program is polling this bot token" in said[0]
    assert any("flow again" in r.getMessage() for r in caplog.records)


async def test_a_webhook_set_later_is_named_and_not_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="supervisor.telegram")
    with trio.fail_after(15):
        fake = FakeBotApi()
        async with running(fake):
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=1, conflict_backoff=Backoff(base=5, cap=5, floor=5))
            send, _receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                await fake.wait_until(lambda: fake.calls_of("deleteWebhook"))
                fake.set_webhook("https://someone.example/hook")
                while not source.conflict:  # our own flag: the fake cannot wake us for it
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            assert fake.webhook_url == "https://someone.example/hook"
            assert len(fake.calls_of("deleteWebhook")) == 1
            await api.aclose()
    assert any("a webhook is set" in r.getMessage() for r in caplog.records)


async def test_an_update_with_no_usable_id_is_said_in_the_log_and_passed_over(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="supervisor.telegram")
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            fake.add_update({"update_id": None, "message": {"text": "x" * 10_000}})
            fake.add_update({"update_id": "7", "edited_message": {"text": "y"}})
            fake.user_sends(USER, "after them")
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                (update,) = await collect(receive, 1)
                assert update.message is not None and update.message.text == "after them"
                nursery.cancel_scope.cancel()
            await api.aclose()
    said = [r.getMessage() for r in caplog.records if "cannot confirm" in r.getMessage()]
    assert len(said) == 2
    assert "no update_id (fields: message)" in said[0] and "update_id of type str" in said[1]
    assert all(len(line) < 300 and TOKEN not in line for line in said)  # no payload, no token


async def test_an_update_with_no_usable_id_alone_makes_no_stream_of_polls(caplog: pytest.LogCaptureFixture) -> None:
    """Telegram keeps an update whose id a proxy garbles (no offset passes it), so each
    poll would come back at once with it alone: the polls pause as after a failed call,
    and the log says it once, not at each poll (nor again while a person writes). An
    update that comes behind it is still handed out, and its confirmation passes both."""
    caplog.set_level(logging.WARNING, logger="supervisor.telegram")
    with trio.fail_after(15):
        async with running() as fake:
            fake.add_user(USER)
            fake.add_update({"update_id": None, "message": {"text": "garbled"}})
            api = BotApi(TOKEN, api_url=fake.url)
            pause = Backoff(base=0.25, cap=0.25, floor=0.25)
            source = UpdateSource(api, poll_s=20, passed_over_backoff=pause)
            send, receive = trio.open_memory_channel[Update](10)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                await trio.sleep(1.0)  # a while: without a pause, hundreds of polls
                assert 2 <= len(fake.calls_of("getUpdates")) <= 8
                assert sum("cannot confirm" in r.getMessage() for r in caplog.records) == 1
                message = fake.user_sends(USER, "behind it")
                (update,) = await collect(receive, 1)
                assert update.message is not None and update.message.message_id == message["message_id"]
                await trio.sleep(1.5)  # polls ahead while it is unconfirmed: the same one again
                assert sum("cannot confirm" in r.getMessage() for r in caplog.records) == 1
                source.confirm(update.update_id)
                await fake.wait_until(lambda: not fake.pending_updates())  # both forgotten
                nursery.cancel_scope.cancel()
            await api.aclose()


async def test_a_stretch_of_holds_says_its_first_in_the_log_and_a_count_at_its_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A long turn: each poll that brings an update for the busy core holds it. One info
    line when the holding begins, one with the count when the core took them all; the
    holds between are debug."""
    caplog.set_level(logging.DEBUG, logger="supervisor.telegram")
    with trio.fail_after(20):
        async with running() as fake:
            fake.add_user(USER)
            api = BotApi(TOKEN, api_url=fake.url)
            source = UpdateSource(api, poll_s=20, ahead_poll_s=0.1)
            backlog = Backlog(source, Memory.open(tmp_path))
            send, receive = trio.open_memory_channel[Update](0)
            async with trio.open_nursery() as nursery:
                await nursery.start(source.run, send)
                nursery.start_soon(backlog.keep_offset)
                for n in range(3):
                    fake.user_sends(USER, f"queued {n}")
                    queued = await receive.receive()
                    backlog.handed(f"queued {n}", queued)  # the core waits with each
                    await backlog.hold_if_stuck()
                    await fake.wait_until(lambda: queued.update_id in fake.confirmed)  # noqa: B023 (held; awaited here)
                for n in range(3):
                    backlog.handled(f"queued {n}")
                await fake.wait_until(lambda: not backlog.memory.held)
                nursery.cancel_scope.cancel()
            await api.aclose()
    holds = [(r.levelno, r.getMessage()) for r in caplog.records if "held here" in r.getMessage()]
    assert holds == [
        (logging.INFO, "1 updates wait for the core: held here, so that newer ones come"),
        (logging.DEBUG, "1 updates wait for the core: held here, so that newer ones come"),
        (logging.DEBUG, "1 updates wait for the core: held here, so that newer ones come"),
        (logging.INFO, "the core took the updates held here: 3 in 3 holds"),
    ]


def test_a_memory_another_user_left_stops_the_start_in_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """telegram.json left by a `sudo -E` run (root's, mode 600): the start ended in a
    PermissionError traceback; the CLI says a `CannotStart` in one sentence, exit 1."""
    (tmp_path / "telegram.json").write_text("{}")
    real_read = Path.read_bytes

    def refused(path: Path) -> bytes:
        if path.name == "telegram.json":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_read(path)

    monkeypatch.setattr(Path, "read_bytes", refused)
    with pytest.raises(CannotStart) as caught:
        Memory.open(tmp_path)
    assert str(caught.value) == (
        f"the Telegram front end cannot read its memory in {tmp_path / 'telegram.json'} (Permission denied): let "
        f"the supervisor's user read and write {tmp_path}, or set state.dir elsewhere, and start again"
    )
