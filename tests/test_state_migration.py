"""A `sessions.json` written before the chat and agent ports (commit abe8275's format,
tests/data/sessions-before-ports.json) keeps its meaning: the same sessions, threads,
rules and queued prompts, the same handled marks; written again, it still reads the same."""

from __future__ import annotations

import shutil
from pathlib import Path

from supervisor.core.state import decode, encode
from supervisor.runtime.store import FILE_NAME, load_state

OLD = Path(__file__).parent / "data" / "sessions-before-ports.json"
DM = "dmc0000000000000000000000a"


def test_a_state_file_from_before_the_ports_keeps_its_meaning(tmp_path: Path) -> None:
    shutil.copy(OLD, tmp_path / FILE_NAME)
    state = load_state(tmp_path)
    alpha = state.live_session_named("alpha")
    assert alpha is not None and alpha.root_id == "root000000000000000000000a"
    assert (alpha.cwd, alpha.persona, alpha.has_history) == ("~/work/alpha", "reviewer", True)
    assert alpha.allowed_rules == ("Bash(npm test)",)  # 🔁 grants survive, for the relaunched agent
    assert alpha.unsettled == ("pst0000000000000000000000b",)  # a cut turn is still noticed
    assert alpha.prompt_texts == {"pst0000000000000000000000b": "run the tests"}
    beta = next(r for r in state.sessions.values() if r.name == "beta")
    assert not beta.is_live and beta.root_id == "root000000000000000000000b"
    assert state.channels[DM].cursor == 1764496800500
    assert "pst0000000000000000000000c" in state.channels[DM].handled  # never handled twice

    again = decode(encode(state))
    assert again.sessions == state.sessions and again.channels == state.channels
