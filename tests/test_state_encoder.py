"""The store's `Encoder` keeps encoded pieces between writes (each session record's text,
shared with the journal lines): whatever the history, every write must read back as exactly the state
it was given, the same as a fresh encoding."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given

from supervisor.core import journal
from supervisor.core import state as state_module
from supervisor.core.state import Encoder, Ledger, SessionRecord, State, converter, decode, encode
from tests.strategies import LEDGER_STEPS


@given(LEDGER_STEPS)
def test_an_encoder_reused_across_writes_writes_each_state_exactly(steps: list[tuple[str, str, int, bool]]) -> None:
    ledger = Ledger()
    encoder = Encoder()
    admitted: list[tuple[str, str]] = []
    for channel, post_id, created, done_now in steps:
        ledger.begin(channel, 0)
        if ledger.admit(channel, post_id, created):
            admitted.append((channel, post_id))
        if done_now and admitted:
            ledger.done(*admitted.pop(0))
        state = State(channels=ledger.snapshot())
        raw = encoder.encode(state)
        assert decode(raw) == state == decode(encode(state))
        assert json.loads(raw) == json.loads(encode(state))


def test_a_record_written_in_a_journal_line_is_not_encoded_again_for_the_snapshot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The snapshot that follows a journal line reuses the record's text: re-encoding
    every record held the event loop ~5 ms per snapshot with 200 sessions."""
    encoder = Encoder()
    records = {f"s{i}": SessionRecord(id=f"s{i}", name=f"n{i}", channel_id="c", user_id="u", cwd="/")
               for i in range(3)}
    line = journal.encode_entry(journal.Entry(1, records), encoder)
    assert journal.decode_entry(line.rstrip(b"\n")) == journal.Entry(1, records)
    encoded: list[SessionRecord] = []

    class Counting:
        structure = staticmethod(converter.structure)

        @staticmethod
        def unstructure(record: SessionRecord) -> object:
            encoded.append(record)
            return converter.unstructure(record)

    monkeypatch.setattr(state_module, "converter", Counting)
    state = State(sessions=records)
    assert decode(encoder.encode(state)) == state
    assert encoded == []
    changed = attrs.evolve(records["s1"], name="renamed")
    state = State(sessions={**records, "s1": changed})
    assert decode(encoder.encode(state)) == state
    assert encoded == [changed]
