"""End-to-end harness for Telegram: the fake Bot API, the fake agent, and the real
supervisor between them, in this process (`start`) or as a child process (`spawn`).

Like `tests.harness.World`, for a person (Alice) who talks to the bot in her private chat.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from supervisor.config import Config, load_config
from supervisor.runtime.supervisor import Supervisor
from tests.fakes.mattermost import FakeMattermost
from tests.fakes.telegram_botapi import TOKEN, FakeBotApi, Sent
from tests.harness import FAKE_AGENT, REPO, InProcess, write_toml

# Per-chat pacing for tests: Telegram's ~1 message/s would make them slow.
FAST = {"per_chat_rate": 50.0, "per_chat_burst": 50.0}


ALICE = 1001
MALLORY = 666


@attrs.define
class TgWorld:
    fake: FakeBotApi
    tmp: Path
    nursery: trio.Nursery
    # Beside Telegram when a test asks for it (nobody talks there); else Telegram alone.
    mattermost: FakeMattermost | None = None
    config_path: Path = attrs.field(init=False)
    supervisor: Supervisor | None = None
    _running: InProcess | None = None
    process: subprocess.Popen[bytes] | None = None
    work: Path = attrs.field(init=False)
    agent_log: Path = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.fake.add_user(ALICE, "Alice", username="alice_tg")
        self.fake.add_user(MALLORY, "Mallory")
        if self.mattermost is not None:
            self.mattermost.add_user("alice")
        for name in ("home", "agent-log", "work", "state"):
            (self.tmp / name).mkdir(exist_ok=True)
        self.work, self.agent_log = self.tmp / "work", self.tmp / "agent-log"
        self.config_path = self.tmp / "supervisor.toml"
        self.configure()

    def configure(self, *, agent: Mapping[str, object] | None = None,
                  telegram: Mapping[str, object] | None = None,
                  sessions: Sequence[dict[str, object]] = ()) -> None:  # fmt: skip
        beside: dict[str, dict[str, object]] = {} if self.mattermost is None else {"mattermost": {
            "url": self.mattermost.url, "token": self.mattermost.bot_token, "allowed_users": ["alice"],
        }}  # fmt: skip
        write_toml(self.config_path, {
            **beside,
            "telegram": {"token": TOKEN, "allowed_user_ids": [ALICE], "api_url": self.fake.url,
                         "poll_s": 2, **(telegram or {})},
            "agent": {
                "command": [sys.executable, str(FAKE_AGENT)],
                "env": {"HOME": str(self.tmp / "home"), "FAKE_AGENT_LOG": str(self.agent_log)},
                "default_cwd": str(self.work),
                "shutdown_grace_s": 2,
                **(agent or {}),
            },
            "render": {"edit_interval_ms": 100},
            "state": {"dir": str(self.tmp / "state")},
        }, sessions)  # fmt: skip

    @property
    def config(self) -> Config:
        return load_config(self.config_path, {})

    # --- the supervisor -------------------------------------------------------------

    async def start(self) -> Supervisor:
        self._running = await InProcess.start(self.nursery, self.config)
        self.supervisor = self._running.supervisor
        return self.supervisor

    async def stop(self) -> None:
        assert self._running is not None
        await self._running.stop()
        self._running = self.supervisor = None

    def spawn(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.tmp / "supervisor.log", "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "supervisor", "run", "--config", str(self.config_path)],
                cwd=self.tmp, env=env, stderr=log,
            )  # fmt: skip
        return self.process

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def log_text(self) -> str:
        path = self.tmp / "supervisor.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # --- the person -----------------------------------------------------------------

    def say(self, text: str, topic: int | None = None, *, user: int = ALICE,
            reply_to: int | None = None) -> dict[str, Any]:  # fmt: skip
        return self.fake.user_sends(user, text, thread_id=topic, reply_to=reply_to)

    def topic(self, name: str) -> int | None:
        return next((t for t, n in self.fake.chat(ALICE).topics.items() if n == name), None)

    def said(self, topic: int | None) -> list[Sent]:
        """The bot's messages in a topic (None: the main view), oldest first."""
        return [s for s in self.fake.bot_messages(ALICE, topic)
                if "forum_topic_created" not in s.message]  # fmt: skip

    def text(self, topic: int | None) -> str:
        return "\n".join(s.message.get("text", "") for s in self.said(topic))

    async def wait_for(self, probe: Callable[[], Any], timeout: float = 20) -> Any:
        with trio.fail_after(timeout):
            while not (value := probe()):
                await trio.sleep(0.02)
        return value

    async def answered(self, topic: int | None, needle: str, timeout: float = 20) -> str:
        try:
            await self.wait_for(lambda: needle in self.text(topic), timeout)
        except trio.TooSlowError:
            raise AssertionError(f"no {needle!r} after {timeout}s in:\n{self.text(topic)}") from None
        return self.text(topic)

    async def new_sessions_without_topics(self, *names: str) -> None:
        """`/new NAME DIR` for each name, in the main view, each answered before the next."""
        for name in names:
            (self.work / name).mkdir(parents=True, exist_ok=True)
            self.say(f"/new {name} {self.work / name}")
            await self.answered(None, f"Started session {name}")

    async def new_session(self, name: str, timeout: float = 20) -> int:
        """`/new NAME DIR` in the main view; the session's topic, once its header is there."""
        directory = self.work / name
        directory.mkdir(parents=True, exist_ok=True)
        self.say(f"/new {name} {directory}")
        topic: int = await self.wait_for(lambda: self.topic(name), timeout)
        await self.wait_for(lambda: self.said(topic), timeout)
        return topic

    def prompts_by_process(self) -> dict[str, list[str]]:
        import json

        found: dict[str, list[str]] = {}
        for path in sorted(self.agent_log.glob("*.jsonl")):
            for raw in path.read_text().splitlines():
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                message = line.get("line", {}) if line.get("event") == "stdin" else {}
                if message.get("type") == "user":
                    content = message["message"]["content"]
                    text = content if isinstance(content, str) else content[0].get("text", "")
                    found.setdefault(path.stem, []).append(text)
        return found


@asynccontextmanager
async def tg_world(tmp_path: Path, *, with_mattermost: bool = False, **settings: Any) -> AsyncIterator[TgWorld]:
    fake = FakeBotApi(**settings)
    mattermost = FakeMattermost() if with_mattermost else None
    async with trio.open_nursery() as nursery:
        await nursery.start(fake.serve)
        if mattermost is not None:
            await nursery.start(mattermost.serve)
        w = TgWorld(fake, tmp_path, nursery, mattermost)
        try:
            yield w
        finally:
            if w.supervisor is not None:
                await w.stop()
            if w.process is not None and w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    while w.process.poll() is None:
                        await trio.sleep(0.05)
                if w.process.poll() is None:
                    w.kill()
            nursery.cancel_scope.cancel()


__all__ = ["ALICE", "MALLORY", "TgWorld", "tg_world"]


@asynccontextmanager
async def started_tg_world(tmp_path: Path, **settings: Any) -> AsyncIterator[TgWorld]:
    """The usual start of an end-to-end test: the fake Bot API (`settings`) and the
    supervisor serving it in-process, paced `FAST`."""
    async with tg_world(tmp_path, **settings) as w:
        w.configure(telegram=FAST)
        await w.start()
        yield w
