"""Hypothesis strategies shared by the property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from supervisor.core.events import Post, Reaction

IDS = st.text(alphabet="abcdefghijkmnopqrstuwxyz13456789", min_size=26, max_size=26)

# Messages that exercise every branch of the command parsers, plus free text.
MESSAGES = st.one_of(
    st.sampled_from(
        ["hello", "!help", "!sessions", "!new alpha", "!new beta /tmp", "!end alpha", "!stop",
         "!status", "!end", "!get a.txt", "!new", "!bogus", "!important: do it", "  !help", "'", ""]
    ),
    st.text(max_size=40),
)

EMOJIS = st.sampled_from(
    ["+1", "thumbsup", "white_check_mark", "-1", "thumbsdown", "x", "repeat",
     "octagonal_sign", "stop_sign", "smile", "heart"]
)


def posts(user_ids: list[str], channel_ids: list[str], root_ids: list[str]) -> st.SearchStrategy[Post]:
    return st.builds(
        Post,
        id=IDS,
        channel_id=st.sampled_from(channel_ids),
        user_id=st.sampled_from(user_ids),
        message=MESSAGES,
        root_id=st.sampled_from(["", *root_ids]),
        create_at=st.integers(0, 2**40),
        type=st.sampled_from(["", "", "", "system_join_channel"]),
        delete_at=st.sampled_from([0, 0, 0, 5]),
    )


def reactions(user_ids: list[str], channel_ids: list[str], post_ids: list[str]) -> st.SearchStrategy[Reaction]:
    return st.builds(
        Reaction,
        user_id=st.sampled_from(user_ids),
        post_id=st.sampled_from(post_ids),
        emoji_name=EMOJIS,
        channel_id=st.sampled_from(["", *channel_ids]),
    )
