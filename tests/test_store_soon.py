"""Changes nobody waits for (`save_soon`) share the write of the awaited change that
follows them (a turn's end and the next prompt's handled mark), instead of making that
mark wait for two fsyncs; alone, they are still written."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from supervisor.core.state import SessionRecord
from supervisor.runtime import store as store_module
from supervisor.runtime.store import Store, read_state


def _record(name: str) -> SessionRecord:
    return SessionRecord(id="a", name=name, channel_id="c", user_id="u", cwd="/")


async def test_a_handled_mark_after_a_save_soon_costs_one_write_not_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Long enough that the mark surely comes within it, however loaded the machine.
    monkeypatch.setattr(store_module, "SOON_S", 30.0, raising=False)
    store = Store.open(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            assert store.admit("c", "p1", 1000)
            store.save_soon(_record("after the turn"))
            await trio.sleep(0.05)  # the store has seen the save by now
            await store.mark_handled("c", "p1")
            assert store.writes == 1
            on_disk = read_state(tmp_path).state
            assert on_disk.sessions["a"].name == "after the turn"
            assert "p1" in on_disk.channels["c"].handled
            nursery.cancel_scope.cancel()


async def test_a_save_soon_alone_is_written_within_soon_s(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            store.save_soon(_record("alone"))
            while store.writes == 0:
                await trio.sleep(0.01)
            assert read_state(tmp_path).state.sessions["a"].name == "alone"
            nursery.cancel_scope.cancel()


async def test_a_save_soon_at_once_waits_for_no_company(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record that says a kept answer showed: a kill before it is on disk would post
    that answer again, so its write starts at once, though nobody waits for it."""
    monkeypatch.setattr(store_module, "SOON_S", 30.0, raising=False)
    store = Store.open(tmp_path)
    with trio.fail_after(20):  # far below SOON_S: it did not wait for company
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            store.save_soon(_record("settled"), at_once=True)
            while store.writes == 0:
                await trio.sleep(0.01)
            assert read_state(tmp_path).state.sessions["a"].name == "settled"
            nursery.cancel_scope.cancel()
