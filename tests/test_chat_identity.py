"""Who a front end was at its last start (supervisor/chat/identity.py): read back only for
the same configuration, never holding the token, and a damaged file is only not used."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from supervisor.chat import ChatUser
from supervisor.chat.fronts import People
from supervisor.chat.identity import Identity, Kept, key

TOKEN = "s3cr3t-token-abcdefghijklmnop"
ALICE = ChatUser("a" * 26, "alice")
BOB = ChatUser("9" * 26, "bob")
LEARNED = Identity(
    ChatUser("b" * 26, "bot", is_bot=True),
    People({BOB.id: BOB, ALICE.id: ALICE}, {"z" * 26: BOB.id, "c" * 26: ALICE.id}),  # the configuration's order
)


async def test_what_a_start_learned_is_read_back_by_the_same_configuration_only(tmp_path: Path) -> None:
    kept = Kept(tmp_path, "mattermost", key("http://chat", TOKEN, "alice"))
    assert kept.recall() is None
    await kept.remember(LEARNED)
    recalled = kept.recall()
    assert recalled == LEARNED
    assert list(recalled.people.main_channels) == ["z" * 26, "c" * 26]  # configured sessions go to the first
    assert (kept.path.stat().st_mode & 0o777) == 0o600
    assert TOKEN not in kept.path.read_text()
    for other in (key("http://chat", "another token", "alice"), key("http://chat", TOKEN, "alice", "bob"),
                  key("http://other", TOKEN, "alice")):  # fmt: skip
        assert Kept(tmp_path, "mattermost", other).recall() is None


async def test_a_damaged_file_is_not_used_and_the_log_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    kept = Kept(tmp_path, "mattermost", key("http://chat", TOKEN, "alice"))
    await kept.remember(LEARNED)
    kept.path.write_text(kept.path.read_text()[:40])
    with caplog.at_level(logging.WARNING):
        assert kept.recall() is None
    assert "cannot be read" in caplog.text
