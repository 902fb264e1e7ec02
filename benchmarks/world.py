"""A benchmark world: `tests.harness.World` on the instrumented server, plus what the figures need.

Owns: starting and tearing down one world (the fake server in this process, the
supervisor as a child process), seeding N persisted sessions without N `!new` commands,
reading the fake agents' logs, and reading a child's memory and CPU from /proc. Every
wait is bounded; every process it starts is ended before the world closes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol

import attrs
import trio

from benchmarks.bench_server import BenchServer
from supervisor.chat.mattermost import link as mattermost_link
from supervisor.core import texts
from supervisor.core.state import ChannelLedger, SessionRecord, State, encode
from supervisor.runtime.store import write_atomically
from tests.harness import World

# When set (run.py --profile DIR), every supervisor runs under pyinstrument and leaves a
# text profile here when it stops.
PROFILE_DIR: Path | None = None
CLK_TCK = os.sysconf("SC_CLK_TCK")
SPAWN_TIMEOUT_S = 30.0  # exec -> WebSocket open, even on a loaded machine
STOP_TIMEOUT_S = 20.0  # SIGTERM -> exit (the supervisor itself allows 10 s)


@asynccontextmanager
async def bench_world(tmp: Path, **server_options: Any) -> AsyncIterator[World]:
    """A fresh instrumented server and a World around it; everything ends on exit."""
    _mkdir(tmp)
    server = BenchServer(**server_options)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        w = World(server, tmp, nursery)
        try:
            yield w
        finally:
            with trio.CancelScope(shield=True):
                await stop_child(w)
            nursery.cancel_scope.cancel()


def server_of(w: World) -> BenchServer:
    assert isinstance(w.server, BenchServer)
    return w.server


DEFAULT_EDIT_INTERVAL_MS = 700  # the product's default `render.edit_interval_ms`


def configure(w: World, *, agent_log: bool = True, rps: float | None = None,
              edit_interval_ms: int = DEFAULT_EDIT_INTERVAL_MS, **agent: object) -> None:
    """The harness's config with the product's defaults (the harness itself uses a 100 ms
    edit interval), and whether agents keep the test log (it costs them CPU). `rps` sets
    `requests_per_second` (unset by default, as in the product); a figure that sets it
    says so in its row."""
    env: dict[str, object] = {"HOME": str(w.home)}
    if agent_log:
        env["FAKE_AGENT_LOG"] = str(w.agent_log)
    w.configure(
        mattermost={} if rps is None else {"requests_per_second": rps},
        render={"edit_interval_ms": edit_interval_ms},
        agent={"env": env, **agent},
    )


async def seed_sessions(w: World, count: int) -> list[str]:
    """`count` live sessions as a previous run would have left them: a thread root each in
    alice's DM and a record each in sessions.json. Returns the root post ids, in order.
    Their agents start lazily, on each thread's next message."""
    server = server_of(w)
    dm = w.dm
    alice = w.alice.id
    records: dict[str, SessionRecord] = {}
    roots: list[str] = []
    for n in range(count):
        cwd = w.work / f"s{n}"
        cwd.mkdir(parents=True, exist_ok=True)
        record = SessionRecord(
            id=str(uuid.uuid4()),
            name=f"s{n}",
            channel_id=dm,
            user_id=alice,
            cwd=str(cwd),
            root_pending_id=f"{alice}:{uuid.uuid4().hex}",
            created_at=texts.utc_iso(time.time()),
        )
        root = await server.user_post_in(dm, server.bot.username, texts.thread_root(record, mattermost_link.WORDS, "claude"))
        records[record.id] = attrs.evolve(record, root_id=root["id"])
        roots.append(str(root["id"]))
    # The ledger as a previous run leaves it: everything up to now dealt with. (With no
    # cursor at all the supervisor asks for `since=0`, which Mattermost treats as no
    # `since`: it gets the newest page of 60 posts only.)
    ledger = {dm: ChannelLedger(cursor=int(time.time() * 1000))}
    state_dir = w.tmp / "state"
    state_dir.mkdir(exist_ok=True)
    write_atomically(state_dir, encode(State(sessions=records, channels=ledger)))
    return roots


# --- the supervisor as a child process ------------------------------------------------


async def spawn_serving(w: World, argv_prefix: list[str] | None = None) -> float:
    """Exec the supervisor; returns the epoch time of the exec once its socket is open."""
    server = server_of(w)
    before = server.websockets(server.bot.id)
    if argv_prefix is None and PROFILE_DIR is not None:
        argv_prefix = _profiled(w.tmp.name, PROFILE_DIR)
    t0 = time.time()
    w.spawn(argv_prefix)
    with trio.fail_after(SPAWN_TIMEOUT_S):
        while server.websockets(server.bot.id) <= before:
            if w.process is not None and w.process.poll() is not None:
                raise RuntimeError(f"the supervisor exited:\n{w.log_text()[-3000:]}")
            await trio.sleep(0.005)
    return t0


def _mkdir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)


def _profiled(name: str, directory: Path) -> list[str]:
    """The argv prefix that runs the supervisor under pyinstrument, a new file each time."""
    directory.mkdir(parents=True, exist_ok=True)
    out = directory / f"{name}-{len(list(directory.glob(name + '-*')))}.txt"
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(out), "-m", "supervisor"]


class Spawned(Protocol):
    """A world whose supervisor runs as a child process (Mattermost's or Telegram's)."""

    process: subprocess.Popen[bytes] | None


async def stop_child(w: Spawned) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it does not end within STOP_TIMEOUT_S."""
    proc = w.process
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    with trio.move_on_after(STOP_TIMEOUT_S):
        await trio.to_thread.run_sync(proc.wait, abandon_on_cancel=True)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """utime + stime of the process (its threads included, its children not)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def child_pid(w: World) -> int:
    proc: subprocess.Popen[bytes] | None = w.process
    assert proc is not None
    return proc.pid


# --- the fake agents' logs ------------------------------------------------------------


@attrs.frozen
class AgentLine:
    t: float
    pid: str
    event: str
    line: dict[str, Any]


class Logged(Protocol):
    """A world whose fake agents log to `agent_log` (Mattermost's or Telegram's)."""

    agent_log: Path


def agent_lines(w: Logged) -> list[AgentLine]:
    """Every stdin/stdout line of every fake agent, by process, in log order."""
    found: list[AgentLine] = []
    for path in sorted(w.agent_log.glob("*.jsonl")):
        for raw in path.read_text().splitlines():
            try:
                entry = json.loads(raw)
            except json.JSONDecodeError:
                continue  # a line being written right now
            if entry.get("event") in ("stdin", "stdout") and isinstance(entry.get("line"), dict):
                found.append(AgentLine(entry["t"], path.stem, entry["event"], entry["line"]))
    return found


def prompt_text(line: dict[str, Any]) -> str | None:
    """The text of a user message written to an agent's stdin, else None."""
    if line.get("type") != "user" or line.get("isReplay"):
        return None
    content = line.get("message", {}).get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return str(content[0].get("text", ""))
    return None


def is_text_delta(line: dict[str, Any]) -> bool:
    if line.get("type") != "stream_event":
        return False
    delta = line.get("event", {}).get("delta", {})
    return isinstance(delta, dict) and delta.get("type") == "text_delta"
