"""Finding what a `!new` announced before a crash (`runtime/announce.py`): by the key our
posts carry where the front end gives it back, else by the exact text."""

from __future__ import annotations

from supervisor.core.events import Post
from supervisor.core.state import SessionRecord
from supervisor.runtime import announce

BOT = "bot"
RECORD = SessionRecord(id="s1", name="fix", channel_id="dm", user_id="alice", cwd="/w/fix",
                       root_pending_id="alice:0123456789abcdef0123456789abcdef", root_id="root1")


def _post(message: str, key: str = "", *, user: str = BOT, root: str = "") -> Post:
    return Post("p1", "dm", user, message, root, 1, (), key)


def test_the_answer_is_found_by_its_key_though_its_text_changed() -> None:
    """The permalink in the answer follows the configured address, which may change
    between the crash and the next start."""
    old = _post("Started session **fix** in `/w/fix`: http://old/pl/root1", announce.answer_pending_id(RECORD))
    assert announce.has_answer([old], RECORD, BOT, "Started session **fix** in `/w/fix`: http://new/pl/root1")


def test_the_answer_is_found_by_its_text_where_the_front_end_keeps_no_key() -> None:
    text = "Started session **fix** in `/w/fix`: http://x/pl/root1"
    assert announce.has_answer([_post(text)], RECORD, BOT, text)
    assert not announce.has_answer([_post(text + " ")], RECORD, BOT, text)


def test_only_our_own_posts_in_the_place_itself_count() -> None:
    key = announce.answer_pending_id(RECORD)
    assert not announce.has_answer([_post("x", key, user="alice")], RECORD, BOT, "y")
    assert not announce.has_answer([_post("x", key, root="root1")], RECORD, BOT, "y")
    assert announce.find_root([_post("old header", RECORD.root_pending_id)], RECORD, BOT, "new header") is not None
