"""`[web]`: where the local web chat listens, and whether other machines may reach it.

The section's class and its one rule (a non-loopback `listen` needs `allow_remote`) live
here, beside the web chat; `supervisor.config` only names the section. The rule raises the
config layer's `Problem`, so a broken `[web]` is exit 2 with one sentence naming the key.
Never creates anything: the token file is made by the server on its first start.
"""

from __future__ import annotations

from typing import Any

import attrs

from supervisor.chat.web import security
from supervisor.config_codec import Problem


def _listen(config: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    problem = security.listen_problem(value, config.allow_remote)
    if problem is not None:
        # The sentence already names the key; the config layer puts the key in front.
        raise Problem((attribute.name,), problem.removeprefix(security.LISTEN_KEY).strip())


@attrs.frozen
class WebConfig:
    """`[web]`: `listen` is HOST:PORT (IPv6 in brackets); loopback unless `allow_remote`."""

    listen: str = attrs.field(default=security.DEFAULT_LISTEN, validator=_listen)
    allow_remote: bool = False
