"""`[mattermost]`: which server, as whom, and who may drive sessions.

Owns the section's class and its rules; `supervisor.config` only names the section and
calls `with_token` once the file is structured. Every rule broken raises
`config_codec.Problem` (its key relative to the section), which the config module turns
into one sentence naming the key.

Keys beyond PRODUCT.md's example (documented for the README):
- `requests_per_second`: an explicit cap on REST requests per second (> 0); unset by
  default: the supervisor follows the limits the server announces.
- `team = ""`: team name; unused for now, optional.

It must never log, never touch the network, and never put the token into a repr or an
error message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from supervisor.config_codec import (
    Problem,
    describe,
    http_url,
    not_empty,
    positive,
    read_token,
    token_problem,
)

TOKEN_VARIABLE: Final = "SUPERVISOR_MATTERMOST_TOKEN"
URL_VARIABLE: Final = "SUPERVISOR_MATTERMOST_URL"


def _strip_slash(url: str) -> str:
    # Paths are appended to it (`{url}/api/v4/...`); a URL without a host is left as
    # written, so the error shows what the user wrote.
    try:
        return url.rstrip("/") if urlsplit(url).netloc else url
    except ValueError:
        return url


def _no_credentials(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    # They would go into every permalink posted to chat, log lines and the WebSocket's
    # Host header; the message leaves the URL out, so as not to repeat the password.
    try:
        netloc = urlsplit(value).netloc or value.split("/", 1)[0]  # `u:pw@host` has no `//`
    except ValueError:
        return  # not a URL: `http_url` says so
    if "@" in netloc:
        raise Problem(
            (attribute.name,),
            "must not hold a user name or password (user:password@): the token is how the supervisor signs in",
        )


def _server_address(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    # `{url}/api/v4/...` would then be /api/v4/api/v4/...: every request a 404.
    if urlsplit(value).path.rstrip("/").endswith("/api/v4"):
        raise Problem(
            (attribute.name,),
            f"must be the address you open Mattermost at in a browser, without /api/v4, not {describe(value)}",
        )


def _usernames(names: Iterable[str]) -> tuple[str, ...]:
    # Mattermost usernames are lower case; people often write them as mentions.
    return tuple(name.strip().removeprefix("@").lower() for name in names)


def _allowed_users(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise Problem((attribute.name,), "must list at least one username")
    not_empty(_, attribute, value)


@attrs.frozen
class MattermostConfig:
    """`[mattermost]`: which server, as whom, and who may drive sessions.

    `token` is the effective token (from `$SUPERVISOR_MATTERMOST_TOKEN`, `token`, or the
    stripped contents of `token_file`, in that order); it never appears in a repr.
    `requests_per_second` caps the REST budget (None: follow the server); `team` is unused.
    """

    url: str = attrs.field(converter=_strip_slash, validator=[_no_credentials, http_url, _server_address])
    allowed_users: tuple[str, ...] = attrs.field(converter=_usernames, validator=_allowed_users)
    token_file: Path | None = None
    token: str = attrs.field(default="", repr=False)
    team: str = ""
    requests_per_second: float | None = attrs.field(default=None, validator=attrs.validators.optional(positive))


def with_token(section: MattermostConfig) -> MattermostConfig:
    """The section with its token read and checked; Problem (never quoting it) if not."""
    token = read_token("mattermost", section.token, section.token_file, TOKEN_VARIABLE)
    if any(c.isspace() for c in token):
        # It goes into an HTTP header; never echo it.
        raise token_problem(section.token_file, "must not contain whitespace")
    return attrs.evolve(section, token=token)
