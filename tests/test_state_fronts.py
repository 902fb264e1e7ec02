"""The ledger in the state file is per front end (issue 10): each place's cursor and
handled marks sit under the name of the front end the place is on; a version 1 file
(one flat map, from before there were several front ends) reads as the same places, and
is grouped by front end from the first catch-up on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from supervisor.core.state import ChannelLedger, Ledger, State, decode, encode
from supervisor.runtime.store import FILE_NAME, load_state, read_state
from tests.strategies import PLACE_LEDGERS
from tests.test_memory_front import running

OLD = Path(__file__).parent / "data" / "sessions-before-ports.json"
DM = "dmc0000000000000000000000a"

@given(st.dictionaries(st.text(min_size=1, max_size=12), PLACE_LEDGERS, max_size=6))
def test_every_place_is_written_under_its_front_end_and_reads_back_the_same(
    channels: dict[str, ChannelLedger],
) -> None:
    state = State(channels=channels)
    raw = encode(state)
    assert decode(raw) == state
    on_disk = json.loads(raw)
    assert on_disk["version"] == 3 and "channels" not in on_disk
    assert {(front, place) for front, places in on_disk["fronts"].items() for place in places} == {
        (ledger.front, place) for place, ledger in channels.items()
    }
    assert raw.decode().count("\n") == 7 + max(1, len(channels))  # still one line per place


def test_a_version_1_file_is_grouped_by_front_end_from_the_first_catch_up(tmp_path: Path) -> None:
    shutil.copy(OLD, tmp_path / FILE_NAME)
    state = load_state(tmp_path)
    assert state.channels[DM].front == ""  # the file does not say; nothing is guessed
    ledger = Ledger.from_state(state.channels)
    ledger.begin(DM, start_ms=2_000_000_000_000, front="mattermost")  # the router, catching up
    again = decode(encode(State(sessions=state.sessions, channels=ledger.snapshot())))
    assert again.channels[DM] == ChannelLedger(
        state.channels[DM].cursor, state.channels[DM].handled, front="mattermost"
    )  # the cursor did not move: the catch-up still starts where the old run stopped
    assert again.sessions == state.sessions


def test_a_place_of_a_front_end_no_longer_caught_up_keeps_its_group() -> None:
    ledger = Ledger.from_state({"tg:1": ChannelLedger(7, {"tg:1:9": 7}, front="telegram")})
    ledger.begin("abcdefghijklmnopqrstuvwxyz", start_ms=10, front="mattermost")
    snapshot = ledger.snapshot()
    assert snapshot["tg:1"].front == "telegram"
    assert snapshot["abcdefghijklmnopqrstuvwxyz"] == ChannelLedger(10, {}, front="mattermost")


async def test_a_running_supervisor_files_its_places_under_their_front_end(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("hello", root)
        await run.wait_for(lambda: run.find(root, "echo #1: hello"))
        assert run.supervisor is not None
        with trio.fail_after(5):
            await run.supervisor.store.flush()
        on_disk = json.loads(encode(read_state(tmp_path / "state").state))
        place = run.supervisor.tasks[root].core.record.channel_id
        assert list(on_disk["fronts"]) == ["memory"] and place in on_disk["fronts"]["memory"]
