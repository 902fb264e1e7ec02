"""The web chat as one of the supervisor's front ends (chat/fronts.py, chat/registry.py).

`open_front` opens the store and reads the token (the link works from then on, before
anything listens); `WebFrontEnd.run` serves the page, says where (on stderr: the URL
carries the token, so it is never a log line), and hands the page's actions to the core
in order, a `Hello` first. `web_settings` is what the web chat takes from the whole
configuration.
"""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

import trio

from supervisor import logs
from supervisor.chat import ChatLink
from supervisor.chat.fronts import People
from supervisor.chat.web.config import WebConfig
from supervisor.chat.web.db import ID_PREFIX
from supervisor.chat.web.front import PageConfig
from supervisor.chat.web.link import CHANNEL, PERSON, Clock, WebLink, to_core
from supervisor.chat.web.port import ChoiceMade, StopAsked
from supervisor.chat.web.server import (
    OpenedWebChat,
    RunningWebChat,
    WebSettings,
    listen,
    open_web_chat,
)
from supervisor.config import Config
from supervisor.core.events import ChatEvent, Hello

if TYPE_CHECKING:
    from supervisor.chat.fronts import FrontEnd


def missing_agent_notice(command: tuple[str, ...], path: str | None) -> str:
    """The page's notice when the agent's program cannot be found ("" when it can)."""
    program = command[0]
    if shutil.which(program, path=path):
        return ""
    return (
        f"The agent program `{program}` was not found on this machine, so sessions cannot "
        "start yet. Install Claude Code (npm install -g @anthropic-ai/claude-code), or set "
        "agent.command in the configuration, then restart the supervisor."
    )


def web_settings(config: Config) -> WebSettings:
    """What the web chat needs from the whole configuration."""
    web = config.web or WebConfig()
    agent = config.agent
    path = agent.env.get("PATH") or os.environ.get("PATH")
    return WebSettings(
        state_dir=config.state.dir,
        listen=web.listen,
        max_upload_bytes=config.files.max_upload_mb * 1_000_000,
        page=PageConfig(
            # Named agents only: the form's first choice is the default agent (no agent=).
            agents=tuple(getattr(config, "agents", {})),
            default_agent=config.default_agent_name,
            personas=tuple(config.personas),
            persona_agents={name: p.agent for name, p in config.personas.items() if p.agent},
            default_cwd=str(agent.default_cwd),
            notice=missing_agent_notice(agent.command, path),
        ),
    )


class WebFrontEnd:
    """The web chat in the supervisor (chat/fronts.py): `link` works from `open_front` on;
    `run` serves the page and hands the page's actions to the core, in order."""

    name = "web"

    def __init__(self, opened: OpenedWebChat, events: trio.MemorySendChannel[ChatEvent]) -> None:
        self._opened = opened
        self._events = events
        self._link = WebLink(opened.front, events)
        self.link: ChatLink = self._link
        self.running: RunningWebChat | None = None

    clock_ahead_ms = 0  # its messages are stamped with our clock

    def owns(self, id_: str) -> bool:
        return id_.startswith(ID_PREFIX)

    async def people(self) -> People:
        return People({PERSON.id: PERSON}, {CHANNEL: PERSON.id})

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve the page until cancelled; `started()` once it listens."""
        front = self._opened.front
        async with self._events, trio.open_nursery() as nursery:
            self.running = await nursery.start(listen, self._opened)
            # The URL carries the access token: said on stderr, to the person who started
            # the supervisor, like a notebook server does; never a log line.
            logs.tell_person(self.running.announcement(to_journal=logs.stderr_is_journal()))
            nursery.start_soon(self._mark_handled)
            # First a hello (the core starts its ledger for this place), then the actions.
            await self._events.send(Hello(f"web-{self.running.port}"))
            task_status.started()
            clock = Clock()
            async for event in front.events:
                await self._events.send(to_core(event, clock))
                if isinstance(event, ChoiceMade | StopAsked):
                    # A button press is acted on at once and never replayed: pressing it
                    # again is the person's call, as with a reaction.
                    await front.handled(event.id)

    async def _mark_handled(self) -> None:
        async for event_id in self._link.handled_marks:
            await self._opened.front.handled(event_id)

    async def aclose(self) -> None:
        await self._opened.aclose()


async def open_front(config: Config, events: trio.MemorySendChannel[ChatEvent]) -> WebFrontEnd:
    """The web chat with its store open (chat/registry.py): not listening until `run`."""
    return WebFrontEnd(await open_web_chat(web_settings(config)), events)


if TYPE_CHECKING:
    # mypy proves the protocol is met; nothing runs.
    def _is_a_front_end(front: WebFrontEnd) -> FrontEnd:
        return front
