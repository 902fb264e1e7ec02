"""The chat port holds: the core scenarios pass on a second front end that has nothing of
Mattermost (tests/memory_front.py), with real fake-agent processes and the real supervisor
in this process. No file of the core knows this front end exists."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import attrs
import pytest
import trio

from supervisor.config import load_config
from supervisor.runtime import router as router_module
from supervisor.runtime.supervisor import Supervisor
from tests.harness import FAKE_AGENT, InProcess, write_toml
from tests.memory_front import BOT, MemoryChat, Message, memory_opener


@attrs.define
class Run:
    chat: MemoryChat
    tmp: Path
    nursery: trio.Nursery
    supervisor: Supervisor | None = None
    running: InProcess | None = None

    @property
    def work(self) -> Path:
        return self.tmp / "work"

    async def start(self) -> None:
        config_path = self.tmp / "supervisor.toml"
        write_toml(
            config_path,
            {
                # Required by today's config; never connected: the memory front end serves.
                "mattermost": {"url": "http://127.0.0.1:9", "token": "unused", "allowed_users": ["pat"]},
                "agent": {
                    "command": [sys.executable, str(FAKE_AGENT)],
                    "env": {"HOME": str(self.tmp / "home")},
                    "default_cwd": str(self.work),
                    "shutdown_grace_s": 2,
                },
                "render": {"edit_interval_ms": 100},
                "state": {"dir": str(self.tmp / "state")},
            },
        )
        config = load_config(config_path, {})
        self.running = await InProcess.start(self.nursery, config, [memory_opener(self.chat)])
        self.supervisor = self.running.supervisor

    async def stop(self) -> None:
        assert self.running is not None
        await self.running.stop()  # its front end has disconnected
        self.running = self.supervisor = None

    async def wait_for(self, check: Callable[[], object], timeout: float = 20) -> None:
        """Until `check()` holds, looked at on every change in the chat (and every 50 ms,
        for what changes inside the supervisor alone)."""
        with trio.fail_after(timeout):
            while not check():
                with trio.move_on_after(0.05):
                    await self.chat.changed.wait()

    async def new_session(self, name: str) -> str:
        self.chat.say(f"!new {name}")
        await self.wait_for(lambda: name in self.chat.threads().values())
        return next(root for root, title in self.chat.threads().items() if title == name)

    def find(self, root: str, *needles: str) -> Message | None:
        """The first of the bot's messages in that thread that contains every needle."""
        return next(
            (m for m in self.chat.thread(root) if m.post.user_id == BOT.id and all(n in m.post.message for n in needles)),
            None,
        )


@asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[Run]:
    for name in ("home", "work", "state"):
        (tmp / name).mkdir()
    async with trio.open_nursery() as nursery:
        run = Run(MemoryChat(), tmp, nursery)
        await run.start()
        try:
            yield run
        finally:
            if run.supervisor is not None:
                await run.stop()


async def test_new_session_and_a_prompt_answered_in_its_thread(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        await run.wait_for(lambda: any("Started session **alpha**" in t for t in run.chat.texts()))
        assert any("alpha" in t for t in run.chat.texts(root))  # the thread's header
        asked = run.chat.say("hello there", root)
        await run.wait_for(lambda: run.find(root, "echo #1: hello there"))
        assert asked.id in run.chat.handled  # durable before the answer showed, then told


async def test_ten_sessions_do_not_cross(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        roots = [await run.new_session(f"s{i}") for i in range(10)]
        for i, root in enumerate(roots):
            run.chat.say(f"marker-{i}", root)
        for i, root in enumerate(roots):
            await run.wait_for(lambda root=root, i=i: run.find(root, f"echo #1: marker-{i}"), 30)  # type: ignore[misc]
        for i, root in enumerate(roots):
            others = {f"marker-{j}" for j in range(10) if j != i}
            assert not any(o in m.post.message for m in run.chat.thread(root) for o in others)


async def test_permission_by_choice_allow_then_reject(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("[tool touch made.txt] make it", root)
        await run.wait_for(lambda: (m := run.find(root, "Permission needed", "touch made.txt")) is not None and m.offered)
        asked = run.find(root, "Permission needed", "touch made.txt")
        assert asked is not None and asked.offered == ("allow_once", "allow_always", "reject")
        assert "React" not in asked.post.message  # no Mattermost legend here: buttons say it
        run.chat.choose(asked.post.id, "allow_once")
        await run.wait_for(lambda: run.find(root, "tool ran: touch made.txt") and asked.settled)
        assert "Allowed once" in run.chat.messages[asked.post.id].post.message

        run.chat.say("[tool touch refused.txt] again", root)
        await run.wait_for(lambda: (m := run.find(root, "Permission needed", "touch refused.txt")) is not None and m.offered)
        second = run.find(root, "Permission needed", "touch refused.txt")
        assert second is not None
        run.chat.choose(second.post.id, "reject")
        await run.wait_for(lambda: run.find(root, "tool denied: The user denied this tool call."))
        await run.wait_for(lambda: "Denied" in run.chat.messages[second.post.id].post.message and second.settled)


async def test_stop_interrupts_a_running_turn(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("[slow 8] a long answer", root)
        await run.wait_for(lambda: run.find(root, "echo #1"))
        run.chat.choose(root, "stop")  # a Stop on the thread: its root stands for it
        await run.wait_for(lambda: run.find(root, "Interrupted"))


async def test_a_restart_catches_up_on_what_was_written_while_down(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("before", root)
        await run.wait_for(lambda: run.find(root, "echo #1: before"))
        await run.stop()
        written = run.chat.say("while down", root)  # nobody connected: no event
        await run.start()
        await run.wait_for(lambda: run.find(root, "echo #2: while down"))
        run.chat.say("sentinel", root)  # answered in order: a second answer would show first
        await run.wait_for(lambda: run.find(root, "echo #3: sentinel"))
        answers = [m for m in run.chat.thread(root) if "echo #2: while down" in m.post.message]
        assert len(answers) == 1 and written.id in run.chat.handled


async def test_a_choice_on_a_request_the_post_index_forgot_still_reaches_its_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The router's index of recent posts is small (memory stays flat); a pending request's
    # post is found through the session that asked.
    monkeypatch.setattr(router_module, "POST_INDEX_SIZE", 1)
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("[tool touch made.txt] make it", root)
        await run.wait_for(lambda: (m := run.find(root, "Permission needed")) is not None and m.offered)
        asked = run.find(root, "Permission needed")
        assert asked is not None and run.supervisor is not None
        run.chat.say("and one more thing", root)  # queued: its post pushes the request's out
        await run.wait_for(lambda: asked.post.id not in run.supervisor.posts)  # type: ignore[union-attr]
        run.chat.choose(asked.post.id, "allow_once")
        await run.wait_for(lambda: run.find(root, "tool ran: touch made.txt"))


async def test_what_was_said_before_a_permission_request_is_posted_once(tmp_path: Path) -> None:
    async with running(tmp_path) as run:
        root = await run.new_session("alpha")
        run.chat.say("[tool touch made.txt] make it", root)
        await run.wait_for(lambda: (m := run.find(root, "Permission needed")) is not None and m.offered)
        asked = run.find(root, "Permission needed")
        assert asked is not None
        run.chat.choose(asked.post.id, "allow_once")
        await run.wait_for(lambda: run.find(root, "tool ran: touch made.txt", "Done"))
        run.chat.say("sentinel", root)  # the thread posts in order: a stray repost shows first
        await run.wait_for(lambda: run.find(root, "sentinel", "Done"))
        said = [m for m in run.chat.thread(root) if m.post.user_id == BOT.id and "I will run a command" in m.post.message]
        assert len(said) == 1
