"""`[telegram]`: which bot, which Bot API server, and who may drive sessions.

Owns the section's class and its rules; `supervisor.config` only names the section and
calls `with_token` once the file is structured. Every rule broken raises
`config_codec.Problem`, which the config module turns into one sentence naming the key.

Keys beyond PRODUCT.md's example (documented in the README):
- `poll_s = 30`: the long-poll time of `getUpdates` (1-50 s, Telegram's range).
- `per_chat_rate = 1.0`, `per_chat_burst = 3`: messages per second per chat the supervisor
  allows itself (Telegram's flood control is about one per second per chat).

It must never log, never touch the network, and never put the token into a repr or an
error message (it is part of every request URL).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from supervisor.config_codec import Problem, describe

API_URL: Final = "https://api.telegram.org"
TOKEN_SHAPE: Final = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}")
TOKEN_VARIABLE: Final = "SUPERVISOR_TELEGRAM_TOKEN"


def _user_ids(_: Any, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
    if not value:
        raise Problem((attribute.name,), "must list at least one numeric Telegram user id")
    for index, user_id in enumerate(value):
        if user_id <= 0:
            raise Problem((attribute.name, index), f"must be a user id (> 0), not {user_id}")


def _api_url(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    try:
        parts = urlsplit(value)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number
    except ValueError:
        ok = False
    if not ok or parts.query or parts.fragment:
        raise Problem((attribute.name,), f"must be an http(s)://host URL, not {describe(value)}")


def _strip_slash(url: str) -> str:
    return url.rstrip("/")


def _poll_s(_: Any, attribute: attrs.Attribute[Any], value: int) -> None:
    if not 1 <= value <= 50:
        raise Problem((attribute.name,), f"must be 1-50 (seconds), not {value}")


def _positive(_: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise Problem((attribute.name,), f"must be more than 0, not {value}")


@attrs.frozen
class TelegramConfig:
    """`token` is the effective token once `with_token` ran (from the variable, `token`
    or the stripped contents of `token_file`); it never appears in a repr."""

    allowed_user_ids: tuple[int, ...] = attrs.field(validator=_user_ids)
    token_file: Path | None = None
    token: str = attrs.field(default="", repr=False)
    api_url: str = attrs.field(default=API_URL, converter=_strip_slash, validator=_api_url)
    poll_s: int = attrs.field(default=30, validator=_poll_s)
    per_chat_rate: float = attrs.field(default=1.0, validator=_positive)
    per_chat_burst: float = attrs.field(default=3.0, validator=_positive)


def with_token(section: TelegramConfig) -> TelegramConfig:
    """The section with its token read and checked; Problem (never quoting it) if not."""
    token = section.token
    if token and section.token_file is not None:
        raise Problem(("token",), "and telegram.token_file are both set: keep only one")
    if section.token_file is not None:
        shown = describe(str(section.token_file))
        try:
            token = section.token_file.read_text(encoding="utf-8").strip()
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            raise Problem(("token_file",), f"{shown} cannot be read: {reason}") from None
        if not token:
            raise Problem(("token_file",), f"{shown} is empty")
    if not token:
        raise Problem(
            ("token",),
            f"is missing: set telegram.token, telegram.token_file or {TOKEN_VARIABLE}",
        )
    if not TOKEN_SHAPE.fullmatch(token):
        raise Problem(
            ("token",), "does not look like a bot token (123456789:AAE..., from @BotFather)"
        )
    return attrs.evolve(section, token=token)
