"""`[telegram]`: alone or beside the others; the token from the variable, the key or a
file; every broken rule one sentence naming the key, never repeating the token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from supervisor.config import ConfigError, config_from_dict
from supervisor.config_codec import describe

TOKEN = "123456789:AAFakeTokenForTestsOnly_abcdefghijk"


def load(telegram: dict[str, Any] | None, env: dict[str, str] | None = None, **more: Any) -> Any:
    data: dict[str, Any] = {"state": {"dir": "/tmp/none"}, **more}
    if telegram is not None:
        data["telegram"] = telegram
    return config_from_dict(data, env or {}, base_dir=Path("/"))


def test_telegram_alone_is_a_configuration_and_the_token_never_shows() -> None:
    config = load({"token": TOKEN, "allowed_user_ids": [5]})
    assert config.telegram.token == TOKEN and config.mattermost is None
    assert config.telegram.api_url == "https://api.telegram.org" and config.telegram.poll_s == 30
    assert TOKEN not in repr(config)


def test_the_token_comes_from_the_variable_or_a_file(tmp_path: Path) -> None:
    from_env = load({"allowed_user_ids": [5], "token_file": "/nonexistent"},
                    {"SUPERVISOR_TELEGRAM_TOKEN": TOKEN})  # fmt: skip
    assert from_env.telegram.token == TOKEN  # the variable displaces the file
    (tmp_path / "tg").write_text(TOKEN + "\n")
    (tmp_path / "tg").chmod(0o600)
    from_file = load({"allowed_user_ids": [5], "token_file": str(tmp_path / "tg")})
    assert from_file.telegram.token == TOKEN
    # The variable alone does not make a front end appear.
    with pytest.raises(ConfigError, match="no front end"):
        load(None, {"SUPERVISOR_TELEGRAM_TOKEN": TOKEN})


@pytest.mark.parametrize(
    ("section", "key", "says"),
    [
        ({"allowed_user_ids": [5]}, "telegram.token", "is missing"),
        ({"allowed_user_ids": [], "token": TOKEN}, "telegram.allowed_user_ids", "at least one"),
        ({"allowed_user_ids": [-1], "token": TOKEN}, "telegram.allowed_user_ids[0]", "user id"),
        ({"allowed_user_ids": ["alice"], "token": TOKEN}, "telegram.allowed_user_ids[0]", "integer"),
        ({"allowed_user_ids": [5], "token": TOKEN, "poll_s": 60}, "telegram.poll_s", "1-50"),
        ({"allowed_user_ids": [5], "token": TOKEN, "api_url": "ftp://x"}, "telegram.api_url", "http"),
        ({"allowed_user_ids": [5], "token": TOKEN, "tokne": 1}, "telegram.tokne", "unknown key"),
        ({"allowed_user_ids": [5], "token": "not a token at all"}, "telegram.token", "look like"),
        ({"allowed_user_ids": [5], "token": TOKEN, "token_file": "/x"}, "telegram.token", "both set"),
        # A chat's first message takes a whole one: less would fail that message at send.
        ({"allowed_user_ids": [5], "token": TOKEN, "per_chat_burst": 0.5}, "telegram.per_chat_burst", "1 or more"),
    ],
)
def test_each_broken_rule_names_its_key_and_never_repeats_the_token(
    section: dict[str, Any], key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load(section)
    assert caught.value.key == key and says in str(caught.value)
    assert TOKEN not in str(caught.value) and "not a token at all" not in str(caught.value)


def test_a_burst_of_one_loads_and_a_chats_pacing_takes_it() -> None:
    from supervisor.core.ratelimit import TokenBucket

    config = load({"allowed_user_ids": [5], "token": TOKEN, "per_chat_burst": 1})
    assert config.telegram.per_chat_burst == 1
    TokenBucket(config.telegram.per_chat_rate, config.telegram.per_chat_burst)  # what a chat's pacing makes


def test_a_token_file_that_holds_no_bot_token_is_named_not_the_token_key(tmp_path: Path) -> None:
    """The user set `token_file`: the sentence names that key and the file, not `token`."""
    (tmp_path / "tg").write_text("not a token at all\n")
    with pytest.raises(ConfigError) as caught:
        load({"allowed_user_ids": [5], "token_file": str(tmp_path / "tg")})
    assert caught.value.key == "telegram.token_file"
    shown = describe(str(tmp_path / "tg"))
    assert str(caught.value).startswith(f"telegram.token_file {shown} holds a token that does not look like")
    assert "not a token at all" not in str(caught.value)
