"""The store's `Encoder` keeps encoded pieces between writes (session lines, each channel's
handled entries): whatever the history, every write must read back as exactly the state
it was given, the same as a fresh encoding."""

from __future__ import annotations

import json

from hypothesis import given

from supervisor.core.state import Encoder, Ledger, State, decode, encode
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
