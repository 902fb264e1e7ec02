"""The supervisor of one run: its parts, built and wired together in one place.

Owns nothing itself. The registry owns the live sessions (`runtime.registry`), the
desk answers the main places one at a time (`runtime.desk`), the router's task reads
every event and hands each decision on (`runtime.router`); the post index is the
router's, which sessions report the posts they make to. `app.py` runs the tasks.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.agent import AgentBackend
from supervisor.agent.registry import AgentRegistry
from supervisor.chat import ChatUser
from supervisor.chat.fronts import FrontEnd, Fronts
from supervisor.config import Config
from supervisor.runtime.desk import Desk
from supervisor.runtime.registry import SessionRegistry, SessionsNursery
from supervisor.runtime.router import PostIndex, RouterTask
from supervisor.runtime.session import SessionTask
from supervisor.runtime.store import Store


class Supervisor:
    def __init__(
        self,
        config: Config,
        chat: Fronts,
        store: Store,
        backend: AgentBackend,
        allowed: dict[str, ChatUser],  # user id -> user; grows when a front end joins late
        main_channels: dict[str, str],  # DM channel id -> user id; likewise
        base_env: Mapping[str, str],
        sessions: SessionsNursery,
        agents: AgentRegistry | None = None,
    ) -> None:
        self.chat, self.store = chat, store
        self.allowed, self.main_channels = allowed, main_channels  # shared with the parts below
        self.posts = PostIndex()
        self.registry = SessionRegistry(
            config, chat, store, backend, allowed, base_env, sessions, agents or AgentRegistry(config),
            on_post_made=self.posts.remember, answer_ended=self._answer_ended,
        )  # fmt: skip
        self.desk = Desk(config, chat, store, self.registry, main_channels)
        self.router = RouterTask(chat, store, self.registry, self.desk, self.posts, main_channels)

    def _answer_ended(self, channel_id: str, post_id: str, root_id: str) -> None:
        # Mail a session never took (it ended first) is answered by the desk, which is built
        # after the registry (it needs the registry): so the registry is handed this method.
        self.desk.reply_ended(channel_id, post_id, root_id)

    async def join(self, front: FrontEnd, place: int) -> None:
        """A front end whose server answered only after the start (nothing was remembered
        of it, chat/identity.py) serves from now on as if from the start: its people and
        places count, its sessions are restored and the announcements a crash cut short
        there finished, all before its first event."""
        people = await front.people()
        self.chat.join(front, place)
        self.allowed.update(people.allowed)
        self.main_channels.update(people.main_channels)
        self.router.people_changed()
        self.registry.restore_sessions(front)
        await self.desk.recover_unannounced(front)

    @property
    def tasks(self) -> dict[str, SessionTask]:
        """Thread root id -> live session task."""
        return self.registry.tasks

    async def shutdown(self, deadline: float | None = None) -> None:
        """Interrupt running turns, end every agent, flush the state: by `deadline`."""
        await self.registry.shutdown(deadline)
