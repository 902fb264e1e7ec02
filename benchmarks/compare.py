"""Side by side with mmpy_bot 2.2.1: the same fake server, an echo bot in each, the same load.

Our echo bot is the supervisor with the instant fake agent; mmpy_bot's is `mmpy_echo.py`,
run from its own virtual environment (`benchmarks/.venv-mmpy`, built here on first use:
mmpy_bot pins httpx<0.28, which the supervisor's environment cannot have). Each gets
`threads` threads in alice's DM. Latency: one prompt at a time, round robin, from the
`posted` frame leaving the server to the reply post existing (and, for the supervisor,
to the reply showing its whole text: its first post can be partial and completed by an
edit). Throughput: the closed loop of `load.closed_loop`, every thread at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs
import trio

from benchmarks.bench_server import SeenPost
from benchmarks.drive import ask, warm_up
from benchmarks.load import Loop, by_bot, closed_loop, echo_complete, supervisor_turn_over
from benchmarks.world import (
    DEFAULT_EDIT_INTERVAL_MS,
    bench_world,
    child_pid,
    configure,
    rss_bytes,
    seed_sessions,
    server_of,
    spawn_serving,
)

HERE = Path(__file__).resolve().parent
MMPY_VENV = HERE / ".venv-mmpy"
MMPY_REQUIREMENT = "mmpy_bot==2.2.1"
MMPY_ECHO = HERE / "mmpy_echo.py"


@attrs.frozen
class Echo:
    first: list[float]  # seconds: posted frame -> first reply post exists
    whole: list[float]  # seconds: posted frame -> the reply shows its whole text
    loop: Loop
    rss: int  # bytes, the bot process after the run


# --- mmpy_bot's environment -------------------------------------------------------------


def mmpy_python(timeout: float) -> Path:
    """The venv's python with mmpy_bot installed; builds it when missing. Raises
    RuntimeError (with pip's last words) when it cannot be built in `timeout` seconds."""
    python = MMPY_VENV / "bin" / "python"
    check = [str(python), "-c", "import mmpy_bot"]
    if python.exists() and subprocess.run(check, capture_output=True, timeout=60).returncode == 0:
        return python
    deadline = time.monotonic() + timeout
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(MMPY_VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", MMPY_REQUIREMENT],
    ]
    for step in steps:
        left = deadline - time.monotonic()
        try:
            done = subprocess.run(step, capture_output=True, text=True, timeout=max(1.0, left))
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"building {MMPY_VENV.name} took over {timeout:.0f} s") from exc
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(step[-3:])}` failed: {done.stderr.strip()[-500:]}")
    if subprocess.run(check, capture_output=True, timeout=60).returncode != 0:
        raise RuntimeError("mmpy_bot does not import after installing it")
    return python


# --- the two bots ----------------------------------------------------------------------


async def measure_mmpy(tmp: Path, python: Path, threads: int, samples: int, per_thread: int) -> Echo:
    async with bench_world(tmp) as w:
        server = server_of(w)
        roots = [str((await w.say(f"thread {i}"))["id"]) for i in range(threads)]
        proc = _start_mmpy(python, server.url, server.bot_token, tmp)
        try:
            with trio.fail_after(30):
                await server.wait_for_websocket()
            bot = server.bot.id

            async def one(k: int) -> float:
                root = roots[k % threads]
                reply = server.watch(root, lambda p: p.user_id == bot and not p.edit)
                post = await w.say(f"latency {k:06d}.", root)
                with trio.fail_after(10):
                    seen = await server.seen(reply)
                return seen.t - server.frame_sent[str(post["id"])]

            first = [await one(k) for k in range(samples)]
            with trio.fail_after(60 + threads * per_thread * 0.1):
                loop = await closed_loop(
                    server, w.say, roots, per_thread, proc.pid,
                    turn_over=_mmpy_replied, complete=_mmpy_replied, tag="tp",
                )
            return Echo(first, first, loop, rss_bytes(proc.pid))
        finally:
            _end_group(proc)


def _start_mmpy(python: Path, url: str, token: str, tmp: Path) -> subprocess.Popen[bytes]:
    with open(tmp / "mmpy.log", "wb") as log:
        return subprocess.Popen(
            [str(python), str(MMPY_ECHO), url, token],
            stdout=subprocess.DEVNULL, stderr=log, start_new_session=True, cwd=tmp,
        )


def _mmpy_replied(post: SeenPost, token: str) -> bool:
    return token in post.message


def _end_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


async def measure_supervisor_echo(tmp: Path, threads: int, samples: int, per_thread: int) -> Echo:
    async with bench_world(tmp) as w:
        configure(w, agent_log=False, edit_interval_ms=DEFAULT_EDIT_INTERVAL_MS)
        roots = await seed_sessions(w, threads)
        await spawn_serving(w)
        await warm_up(w, roots)
        server = server_of(w)
        bot = server.bot.id
        first: list[float] = []
        whole: list[float] = []
        with trio.fail_after(60 + samples):
            async with trio.open_nursery() as nursery:
                for k in range(samples):
                    root, token = roots[k % threads], f"latency {k:06d}."
                    complete = server.watch(root, by_bot(bot, echo_complete, token))
                    post, reply, _done = await ask(w, root, token)
                    sent = server.frame_sent[str(post["id"])]
                    first.append(reply.t - sent)
                    nursery.start_soon(_whole, server, complete, sent, whole)
        with trio.fail_after(60 + threads * per_thread * 0.1):
            loop = await closed_loop(
                server, w.say, roots, per_thread, child_pid(w),
                turn_over=supervisor_turn_over, complete=echo_complete, tag="tp",
            )
        return Echo(first, whole, loop, rss_bytes(child_pid(w)))


async def _whole(server: object, watcher: object, sent: float, into: list[float]) -> None:
    post = await server.seen(watcher)  # type: ignore[attr-defined]
    into.append(post.t - sent)
