"""The front ends the supervisor knows, by their configuration section: the one place a
new front end is registered. `open_fronts` opens each configured one, in this order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import trio

from supervisor.chat.fronts import FrontEnd
from supervisor.chat.mattermost.front import open_front as open_mattermost
from supervisor.chat.telegram.front import open_front as open_telegram
from supervisor.chat.web.front_end import open_front as open_web
from supervisor.config import Config
from supervisor.core.events import ChatEvent

Opener = Callable[[Config, trio.MemorySendChannel[ChatEvent]], Awaitable[FrontEnd]]

# section -> (is it configured?, how to open it)
FRONT_ENDS: dict[str, tuple[Callable[[Config], bool], Opener]] = {
    "mattermost": (lambda config: config.mattermost is not None, open_mattermost),
    "telegram": (lambda config: config.telegram is not None, open_telegram),
    "web": (lambda config: config.web is not None, open_web),
}


def configured_openers(config: Config) -> list[Opener]:
    return [opener for configured, opener in FRONT_ENDS.values() if configured(config)]


async def open_fronts(
    config: Config, events: trio.MemorySendChannel[ChatEvent], openers: Sequence[Opener]
) -> list[FrontEnd]:
    """Each front end, connected; closes those opened when one fails."""
    opened: list[FrontEnd] = []
    try:
        for opener in openers:
            opened.append(await opener(config, events.clone()))
    except BaseException:
        with trio.CancelScope(shield=True):
            for front in opened:
                await front.aclose()
        raise
    return opened
