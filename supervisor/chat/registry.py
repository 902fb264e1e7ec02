"""The front ends the supervisor knows, by their configuration section: the one place a
new front end is registered, with how to open it and how `check` examines it.
`open_fronts` opens each configured one (the order is their places: the first is where
`[[sessions]]` threads go), and `check` reports them, in this order.

A front end's modules are imported only when it is opened or checked: one not configured
costs no start-up time (each brings its own protocol stack: an HTTP server, a codec)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

import attrs
import trio

from supervisor.chat.fronts import FrontEnd
from supervisor.chat.identity import START_PATIENCE_S
from supervisor.checks import CheckResult, Limits
from supervisor.config import Config
from supervisor.core.events import ChatEvent
from supervisor.logs import one_line

Opener = Callable[[Config, trio.MemorySendChannel[ChatEvent]], Awaitable[FrontEnd]]
Checks = Callable[[Config, Limits], Awaitable[list[CheckResult]]]

log = logging.getLogger("supervisor")


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


# A front end not open by then (its server silent, and nothing remembered of it to start
# from: chat/identity.py) joins once its server answers, rather than holding up the
# others; one that starts from memory is open by then (its own patience is
# START_PATIENCE_S).
JOIN_LATE_AFTER_S: Final = START_PATIENCE_S + 1.0

Placed = tuple[int, FrontEnd]  # a front end open, and its place in the configuration


async def open_fronts(
    config: Config,
    events: trio.MemorySendChannel[ChatEvent],
    openers: Sequence[Opener],
    nursery: trio.Nursery,
    opened: list[Placed],
    late: trio.MemorySendChannel[Placed],
) -> list[Placed]:
    """Open each front end in a task of `nursery`, all at once: one whose server is slow
    to answer holds up none of the others' time. Returns those open once all are, or once
    JOIN_LATE_AFTER_S has passed and at least one is; each opened later is sent to `late`
    (which has room for all). Each is put in `opened` the moment it is, for the caller to
    close whatever happens; a failure to open one fails `nursery` (a late one's is logged)."""
    started: list[Placed] | None = None
    changed = trio.Event()

    async def open_one(place: int, opener: Opener) -> None:
        try:
            front = await opener(config, events.clone())
        except Exception as exc:
            if started is None:
                raise  # the start's own failure: said in one sentence, exit 1
            # The others serve already: this one is left out, said once, until a restart.
            log.error("a front end whose server answered late could not be opened: %s; the others go on, and "
                      "the next start tries it again", one_line(exc))  # fmt: skip
            return
        opened.append((place, front))
        if started is None:
            changed.set()
        else:
            log.info("%s answers now: it joins the front ends serving", front.name)
            late.send_nowait((place, front))

    for place, opener in enumerate(openers):
        nursery.start_soon(open_one, place, opener)
    with trio.move_on_after(JOIN_LATE_AFTER_S):
        while len(opened) < len(openers):
            changed = trio.Event()
            await changed.wait()
    while not opened:
        changed = trio.Event()
        await changed.wait()
    started = list(opened)
    if len(started) < len(openers):
        log.warning("serving without the front end(s) whose server has not answered yet; each "
                    "joins when it does (nothing is remembered of it to start from)")  # fmt: skip
    return started
