"""`[telegram]`: which bot, which Bot API server, and who may drive sessions.

Owns the section's class and its rules; `supervisor.config` only names the section and
calls `with_token` once the file is structured. Every rule broken raises
`config_codec.Problem`, which the config module turns into one sentence naming the key.

Keys beyond PRODUCT.md's example (documented in the README):
- `poll_s = 30`: the long-poll time of `getUpdates` (1-50 s, Telegram's range).
- `per_chat_rate = 1.0`, `per_chat_burst = 3`: messages per second per chat the supervisor
  allows itself (Telegram's flood control is about one per second per chat); the burst is
  1 or more (a chat's first message takes a whole one).

It must never log, never touch the network, and never put the token into a repr or an
error message (it is part of every request URL).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import attrs

from supervisor.config_codec import Problem, at_least, http_url, positive, read_token, token_problem

API_URL: Final = "https://api.telegram.org"
TOKEN_SHAPE: Final = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}")
TOKEN_VARIABLE: Final = "SUPERVISOR_TELEGRAM_TOKEN"


def _user_ids(_: Any, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    if not value:
        raise Problem((attribute.name,), "must list at least one numeric Telegram user id")
    for index, user_id in enumerate(value):
        if user_id <= 0:
            raise Problem((attribute.name, index), f"must be a user id (> 0), not {user_id}")


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


def _poll_s(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 50:
        raise Problem((attribute.name,), f"must be 1-50 (seconds), not {value}")


@attrs.frozen
class TelegramConfig:
    """`token` is the effective token once `with_token` ran (from the variable, `token`
    or the stripped contents of `token_file`); it never appears in a repr."""

    allowed_user_ids: tuple[int, ...] = attrs.field(validator=_user_ids)
    token_file: Path | None = None
    token: str = attrs.field(default="", repr=False)
    api_url: str = attrs.field(default=API_URL, converter=_strip_slash, validator=http_url)
    poll_s: int = attrs.field(default=30, validator=_poll_s)
    per_chat_rate: float = attrs.field(default=1.0, validator=positive)
    per_chat_burst: float = attrs.field(default=3.0, validator=at_least(1))


def with_token(section: TelegramConfig) -> TelegramConfig:
    """The section with its token read and checked; Problem (never quoting it) if not."""
    token = read_token("telegram", section.token, section.token_file, TOKEN_VARIABLE)
    if not TOKEN_SHAPE.fullmatch(token):
        raise token_problem(
            section.token_file, "does not look like a bot token (123456789:AAE..., from @BotFather)"
        )
    return attrs.evolve(section, token=token)
