"""What a reaction chooses on Mattermost, skin tones included: live (`reaction_added`, in
test_mm_codec) and read back by the catch-up (`MattermostLink.choices_on`)."""

from __future__ import annotations

import httpx
import pytest
import trio

from supervisor.chat import ChatUser
from supervisor.chat.mattermost.choices import kind_of
from supervisor.chat.mattermost.link import MattermostLink
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.chat.mattermost.websocket import MattermostWebSocket
from supervisor.core.events import ChatEvent, Choice

ALICE = "ali0000000000000000000000a"
CHANNEL = "chn0000000000000000000000a"
POST = "pst0000000000000000000000a"
# Mattermost's names for the five tones (its model/emoji_data.go: `+1_light_skin_tone`...).
TONES = ("light", "medium_light", "medium", "medium_dark", "dark")


@pytest.mark.parametrize("tone", TONES)
@pytest.mark.parametrize(
    "name, kind",
    [("+1", "allow_once"), ("thumbsup", "allow_once"), ("-1", "reject"), ("thumbsdown", "reject")],
)
def test_a_thumb_in_any_skin_tone_chooses_as_the_plain_one(name: str, kind: str, tone: str) -> None:
    assert kind_of(name) == kind
    assert kind_of(f"{name}_{tone}_skin_tone") == kind


@pytest.mark.parametrize(
    "name", ["raised_hand_medium_skin_tone", "+1_medium", "+1_medium_skin_tone_x", "x_skin_tone"]
)
def test_other_names_choose_nothing(name: str) -> None:
    assert kind_of(name) is None


async def test_the_catch_up_reads_a_skin_toned_thumb_as_its_choice() -> None:
    """A 👍🏽 given while the supervisor was away: the catch-up must find the allow, or the
    request is denied at its timeout though the person approved it."""
    reactions = [
        {"user_id": ALICE, "post_id": POST, "emoji_name": "+1_medium_skin_tone"},
        {"user_id": ALICE, "post_id": POST, "emoji_name": "-1_dark_skin_tone"},
        {"user_id": ALICE, "post_id": POST, "emoji_name": "heart_eyes"},
    ]

    def server(request: httpx.Request) -> httpx.Response:
        assert request.url.path == f"/api/v4/posts/{POST}/reactions"
        return httpx.Response(200, json=reactions)

    rest = MattermostRest("http://mm.test", "token", transport=httpx.MockTransport(server))
    send, _ = trio.open_memory_channel[ChatEvent](1)
    me = ChatUser("bot0000000000000000000000a", "claude", True)
    link = MattermostLink(rest, MattermostWebSocket("http://mm.test", "token", send), me)
    with trio.fail_after(10):
        made = await link.choices_on(CHANNEL, POST)
    await link.aclose()
    assert made == [
        Choice(ALICE, POST, "allow_once", CHANNEL),
        Choice(ALICE, POST, "reject", CHANNEL),
    ]
