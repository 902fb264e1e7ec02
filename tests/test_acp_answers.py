"""Which offered option answers a person's choice (`agent.acp.answers.permission_outcome`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from supervisor.agent.acp.answers import permission_outcome
from supervisor.agent.acp.events import OptionKind
from supervisor.agent.acp.wire import PermissionOption
from tests.strategies import ACP_OPTION_KINDS, ACP_OPTIONS


@given(ACP_OPTIONS, st.sampled_from([*ACP_OPTION_KINDS, "cancelled"]))
def test_the_answer_is_the_kind_asked_else_the_same_sense_never_the_opposite(
    options: list[PermissionOption], kind: OptionKind
) -> None:
    outcome = permission_outcome(options, kind)
    offered = {o.kind for o in options}
    sense = kind.split("_")[0]
    if kind == "cancelled" or not [k for k in offered if k.split("_")[0] == sense]:
        assert outcome == {"outcome": "cancelled"}
        return
    assert outcome["outcome"] == "selected"
    chosen = next(o.kind for o in options if o.option_id == outcome["optionId"])
    if kind in offered:
        assert chosen == kind
    else:
        assert chosen.split("_")[0] == sense  # an allow is never sent as a reject


def test_an_allow_once_not_offered_is_never_answered_with_a_reject() -> None:
    options = [PermissionOption("always", "allow_always"), PermissionOption("reject", "reject_once")]
    assert permission_outcome(options, "allow_once") == {"outcome": "selected", "optionId": "always"}
    assert permission_outcome([PermissionOption("reject", "reject_once")], "allow_once") == {"outcome": "cancelled"}


def test_reject_always_falls_back_to_reject_once() -> None:
    # OpenCode offers once / always / reject, no reject_always.
    options = [PermissionOption("once", "allow_once"), PermissionOption("reject", "reject_once")]
    assert permission_outcome(options, "reject_always") == {"outcome": "selected", "optionId": "reject"}
