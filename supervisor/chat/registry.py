"""The front ends the supervisor knows, by their configuration section: the one place a
new front end is registered, with how to open it and how `check` examines it.
`open_fronts` opens each configured one, and `check` reports them, in this order.

A front end's modules are imported only when it is opened or checked: one not configured
costs no start-up time (each brings its own protocol stack: an HTTP server, a codec)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import attrs
import trio

from supervisor.chat.fronts import FrontEnd
from supervisor.checks import CheckResult, Limits
from supervisor.config import Config
from supervisor.core.events import ChatEvent

Opener = Callable[[Config, trio.MemorySendChannel[ChatEvent]], Awaitable[FrontEnd]]
Checks = Callable[[Config, Limits], Awaitable[list[CheckResult]]]


@attrs.frozen
class FrontEndKind:
    configured: Callable[[Config], bool]  # is its section in the configuration?
    open: Opener
    checks: Checks  # its own lines in `check`; never raises for a failed check


async def open_mattermost(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> FrontEnd:
    from supervisor.chat.mattermost.front import open_front

    return await open_front(config, events)


async def _mattermost_checks(config: Config, limits: Limits) -> list[CheckResult]:
    from supervisor.chat.mattermost import doctor

    assert config.mattermost is not None
    return await doctor.checks(config.mattermost, limits)


async def open_telegram(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> FrontEnd:
    from supervisor.chat.telegram.front import open_front

    return await open_front(config, events)


async def _telegram_checks(config: Config, limits: Limits) -> list[CheckResult]:
    from supervisor.chat.telegram import doctor

    assert config.telegram is not None
    return await doctor.config_checks(config.telegram, network_s=limits.network_s)


async def open_web(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> FrontEnd:
    from supervisor.chat.web.front_end import open_front

    return await open_front(config, events)


async def _web_checks(config: Config, limits: Limits) -> list[CheckResult]:
    from supervisor.chat.web import doctor

    assert config.web is not None
    return doctor.checks(config.web.listen, config.web.allow_remote, config.state.dir)


# by configuration section
FRONT_ENDS: dict[str, FrontEndKind] = {
    "mattermost": FrontEndKind(lambda config: config.mattermost is not None, open_mattermost, _mattermost_checks),
    "telegram": FrontEndKind(lambda config: config.telegram is not None, open_telegram, _telegram_checks),
    "web": FrontEndKind(lambda config: config.web is not None, open_web, _web_checks),
}


def configured(config: Config) -> list[FrontEndKind]:
    return [kind for kind in FRONT_ENDS.values() if kind.configured(config)]


def configured_openers(config: Config) -> list[Opener]:
    return [kind.open for kind in configured(config)]


async def open_fronts(
    config: Config, events: trio.MemorySendChannel[ChatEvent], openers: Sequence[Opener]
) -> list[FrontEnd]:
    """Each front end, connected, in the order given; all at once, so that one whose
    server is slow to answer holds up none of the others' time. Closes those opened when
    one fails."""
    opened: list[FrontEnd | None] = [None] * len(openers)

    async def open_one(index: int, opener: Opener) -> None:
        opened[index] = await opener(config, events.clone())

    try:
        async with trio.open_nursery() as nursery:
            for index, opener in enumerate(openers):
                nursery.start_soon(open_one, index, opener)
    except BaseException:
        with trio.CancelScope(shield=True):
            for front in opened:
                if front is not None:
                    await front.aclose()
        raise
    return [front for front in opened if front is not None]
