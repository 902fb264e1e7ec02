"""End-to-end harness: the fake Mattermost, the fake agent, and the supervisor between them.

The supervisor runs either in this process (`World.start()`, fast, for most tests) or as a
real child process (`World.spawn()`: `python -m supervisor run` or the built zipapp), which
the crash and signal tests need. Either way it talks to the fake server over loopback and
runs real agent child processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from supervisor.app import serve
from supervisor.chat.registry import Opener
from supervisor.config import Config, load_config
from supervisor.runtime.supervisor import Supervisor
from tests.fakes.mattermost import FakeMattermost

REPO = Path(__file__).resolve().parents[1]
FAKE_AGENT = REPO / "tests" / "fakes" / "fake_agent.py"
JSON = dict[str, Any]


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def write_toml(path: Path, tables: dict[str, dict[str, object]], sessions: Sequence[dict[str, object]] = ()) -> None:
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
        lines.append("")
    for spec in sessions:
        lines.append("[[sessions]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in spec.items()]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it may hold a token: as the README asks (others: a warning on stderr)


@attrs.define
class InProcess:
    """`serve` running in this process, as most tests start it. `stop` is a graceful stop,
    as on SIGTERM, and returns once `serve` has (its hold on the state directory with it,
    so that the next start in this process finds it free)."""

    supervisor: Supervisor
    _scope: trio.CancelScope
    _stopped: trio.Event

    @classmethod
    async def start(
        cls, nursery: trio.Nursery, config: Config, front_ends: Sequence[Opener] | None = None
    ) -> InProcess:
        scope, stopped = trio.CancelScope(), trio.Event()

        async def run(task_status: trio.TaskStatus[Supervisor]) -> None:
            try:
                with scope:
                    await serve(config, front_ends=front_ends, task_status=task_status)
            finally:
                stopped.set()

        return cls(await nursery.start(run), scope, stopped)

    async def stop(self) -> None:
        with trio.fail_after(15):
            await self.supervisor.shutdown()
        self._scope.cancel()
        with trio.fail_after(5):
            await self._stopped.wait()


@attrs.define
class World:
    """One fake server, one person (alice), a config file, and a supervisor to run."""

    server: FakeMattermost
    tmp: Path
    nursery: trio.Nursery
    config_path: Path = attrs.field(init=False)
    alice: Any = attrs.field(init=False)
    supervisor: Supervisor | None = None
    _running: InProcess | None = None
    process: subprocess.Popen[bytes] | None = None
    home: Path = attrs.field(init=False)
    agent_log: Path = attrs.field(init=False)
    work: Path = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.alice = self.server.add_user("alice")
        self.server.add_user("mallory")
        for name in ("home", "agent-log", "work", "state"):
            (self.tmp / name).mkdir(exist_ok=True)
        self.home, self.agent_log, self.work = self.tmp / "home", self.tmp / "agent-log", self.tmp / "work"
        self.config_path = self.tmp / "supervisor.toml"
        self.configure()

    def configure(self, *, agent: dict[str, object] | None = None, render: dict[str, object] | None = None,
                  mattermost: dict[str, object] | None = None, sessions: Sequence[dict[str, object]] = (),
                  agent_command: Sequence[str] | None = None) -> None:
        tables: dict[str, dict[str, object]] = {
            "mattermost": {
                "url": self.server.url,
                "token": self.server.bot_token,
                "allowed_users": ["alice"],
                **(mattermost or {}),
            },
            "agent": {
                "command": list(agent_command or [sys.executable, str(FAKE_AGENT)]),
                "env": {"HOME": str(self.home), "FAKE_AGENT_LOG": str(self.agent_log)},
                "default_cwd": str(self.work),
                "shutdown_grace_s": 2,
                **(agent or {}),
            },
            "render": {"edit_interval_ms": 100, **(render or {})},
            "state": {"dir": str(self.tmp / "state")},
        }
        write_toml(self.config_path, tables, sessions)

    @property
    def config(self) -> Config:
        return load_config(self.config_path, {})

    # --- the supervisor, in this process -------------------------------------------

    async def start(self) -> Supervisor:
        self._running = await InProcess.start(self.nursery, self.config)
        self.supervisor = self._running.supervisor
        return self.supervisor

    async def stop(self) -> None:
        """A graceful stop, as on SIGTERM."""
        assert self._running is not None
        await self._running.stop()
        self._running = self.supervisor = None

    # --- the supervisor, as a child process ----------------------------------------

    def spawn(
        self, argv_prefix: Sequence[str] | None = None, *, preexec_fn: Callable[[], object] | None = None
    ) -> subprocess.Popen[bytes]:
        prefix = list(argv_prefix or [sys.executable, "-m", "supervisor"])
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with open(self.tmp / "supervisor.log", "ab") as log:
            self.process = subprocess.Popen(
                [*prefix, "run", "--config", str(self.config_path)], cwd=self.tmp, env=env, stderr=log,
                preexec_fn=preexec_fn,
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

    @property
    def dm(self) -> str:
        return str(self.server.dm_with_bot("alice")["id"])

    async def say(self, message: str, root_id: str = "", user: str = "alice") -> JSON:
        return await self.server.user_post(user, message, root_id=root_id)

    async def react(self, post_id: str, emoji: str, user: str = "alice") -> None:
        await self.server.user_react(user, post_id, emoji)

    def bot_posts(self, root_id: str | None = None) -> list[JSON]:
        posts = [p for p in self.server.posts_in_channel(self.dm) if p["user_id"] == self.server.bot.id]
        if root_id is not None:
            posts = [p for p in posts if p["root_id"] == root_id]
        return sorted(posts, key=lambda p: p["create_at"])

    def post(self, post_id: str) -> JSON:
        return next(p for p in self.server.posts_in_channel(self.dm) if p["id"] == post_id)

    def thread_text(self, root_id: str) -> str:
        return "\n".join(p["message"] for p in self.bot_posts(root_id))

    async def new_session(self, name: str, cwd: Path | None = None, timeout: float = 20) -> str:
        """`!new NAME DIR` in the main DM; returns the thread root's id."""
        directory = cwd or self.work / name
        directory.mkdir(parents=True, exist_ok=True)
        await self.say(f"!new {name} {directory}")
        root = await self.wait_for(lambda: self._root_of(name), timeout)
        return str(root["id"])

    def _root_of(self, name: str) -> JSON | None:
        return next((p for p in self.bot_posts() if not p["root_id"] and f"Session `{name}`" in p["message"]), None)

    async def wait_for(self, probe: Callable[[], Any], timeout: float = 20) -> Any:
        with trio.fail_after(timeout):
            while not (value := probe()):
                await trio.sleep(0.02)
        return value

    async def settled(self, root_id: str, timeout: float = 30) -> None:
        """The in-process session's turn is over and all it wants shown is on the server."""
        assert self.supervisor is not None

        def done() -> bool:
            task = self.supervisor.tasks.get(root_id) if self.supervisor else None
            return task is None or (task.core.turn is None and not task.core.queue and task.outbox.is_settled())

        await self.wait_for(done, timeout)

    async def answered(self, root_id: str, needle: str, timeout: float = 20) -> str:
        try:
            await self.wait_for(lambda: needle in self.thread_text(root_id), timeout)
        except trio.TooSlowError:
            raise AssertionError(f"no {needle!r} in the thread after {timeout}s:\n{self.thread_text(root_id)}") from None
        return self.thread_text(root_id)

    # --- the agents -------------------------------------------------------------------

    def agent_lines(self) -> list[JSON]:
        lines = []
        for path in sorted(self.agent_log.glob("*.jsonl")):
            for raw in path.read_text().splitlines():
                try:
                    lines.append({**json.loads(raw), "log": path.stem})
                except json.JSONDecodeError:
                    continue  # a line being written right now
        return lines

    def agent_starts(self) -> list[JSON]:
        return [line for line in self.agent_lines() if line.get("event") == "start"]

    def prompts_by_process(self) -> dict[str, list[str]]:
        """Agent process (log name = pid) -> the prompt texts it received on stdin."""
        found: dict[str, list[str]] = {}
        for line in self.agent_lines():
            if line.get("event") != "stdin":
                continue
            message = line.get("line", {})
            if message.get("type") == "user":
                content = message["message"]["content"]
                text = content if isinstance(content, str) else content[0].get("text", "")
                found.setdefault(line["log"], []).append(text)
        return found


@asynccontextmanager
async def world(tmp_path: Path) -> AsyncIterator[World]:
    server = FakeMattermost()
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        w = World(server, tmp_path, nursery)
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


def personas_toml(path: Path, personas: dict[str, dict[str, str]]) -> None:
    """Append [personas.NAME] tables to a config file written by World.configure."""
    with path.open("a") as f:
        for name, values in personas.items():
            f.write(f"\n[personas.{name}]\n")
            for key, value in values.items():
                f.write(f"{key} = {toml_value(value)}\n")
