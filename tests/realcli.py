"""Helpers for tests that drive the real Claude Code CLI against the fake API.

* ``claude_binary()`` -- where the CLI is: ``.cache/claude-code`` (``scripts/install_claude.sh``),
  else ``$SUPERVISOR_TEST_CLAUDE`` (a path or a name on PATH), else None.
* ``claude_env(home, api_url)`` -- a clean environment for the child (nothing inherited but PATH).
* ``requires_real_cli`` -- skip marker when the CLI is missing; under ``CI=true`` the tests are
  *not* skipped, and ``require_claude_binary()`` (call it from a fixture) fails them instead.
* ``CliProcess`` / ``open_cli(...)`` -- spawn the CLI with stream-json pipes, read NDJSON
  frames in the background, send frames, wait for frames, shut down cleanly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from supervisor.agent.claude import PROTOCOL_FLAGS

REPO_ROOT = Path(__file__).resolve().parents[1]
PINNED_VERSION = "2.1.330"
CACHE_BINARY = REPO_ROOT / ".cache" / "claude-code" / "node_modules" / ".bin" / "claude"
ENV_OVERRIDE = "SUPERVISOR_TEST_CLAUDE"
MISSING_REASON = "Claude Code CLI not installed (run scripts/install_claude.sh)"

# The flags our supervisor launches the CLI with: the very same tuple, so the direct
# protocol tests exercise exactly what the product sends.
STREAM_JSON_FLAGS: tuple[str, ...] = PROTOCOL_FLAGS


def claude_binary() -> Path | None:
    """The CLI to test with, or None when there is none."""
    if CACHE_BINARY.exists() and os.access(CACHE_BINARY, os.X_OK):
        return CACHE_BINARY
    override = os.environ.get(ENV_OVERRIDE, "").strip()
    if override:
        candidate = Path(override).expanduser()
        if candidate.exists() and os.access(candidate, os.X_OK):
            return candidate.resolve()
        found = shutil.which(override)
        if found:
            return Path(found)
    return None


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def require_claude_binary() -> Path:
    """The CLI path; skips the test when missing -- or fails it under CI=true."""
    binary = claude_binary()
    if binary is None:
        if in_ci():
            pytest.fail(f"{MISSING_REASON}; CI=true, so the real-CLI tests must run", pytrace=False)
        pytest.skip(MISSING_REASON)
    return binary


# Skip where the CLI is missing -- except on CI, where the test runs and
# require_claude_binary() makes it fail loudly.
requires_real_cli = pytest.mark.skipif(
    claude_binary() is None and not in_ci(), reason=MISSING_REASON
)


def claude_version(binary: Path) -> str:
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return out.stdout.strip()


def claude_env(home: Path, api_url: str, **extra: str) -> dict[str, str]:
    """A clean environment: the child sees the fake API and a private HOME, nothing else."""
    env = {
        "PATH": os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": api_url,
        "ANTHROPIC_API_KEY": "test",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
    }
    # SUPERVISOR_TEST_RUN: tests/conftest.py finds leftover processes by this marker.
    for key in ("LANG", "LC_ALL", "TMPDIR", "SUPERVISOR_TEST_RUN"):
        if key in os.environ:
            env[key] = os.environ[key]
    env.update(extra)
    return env


def project_dir(home: Path, cwd: Path) -> Path:
    """Where the CLI keeps the session transcripts for ``cwd``.

    2.1.330 replaces every character outside ``[A-Za-z0-9]`` with ``-`` (not only ``/`` as
    PROTOCOL.md section 7 says); names longer than 200 characters are cut to 200 and get
    ``-<hash>`` appended -- for those we look the folder up by its prefix.
    """
    root = home / ".claude" / "projects"
    name = re.sub(r"[^A-Za-z0-9]", "-", str(cwd))
    if len(name) <= 200:
        return root / name
    matches = sorted(root.glob(f"{name[:200]}-*"))
    return matches[0] if matches else root / f"{name[:200]}-?"


def user_message(text: str | list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "user",
        "message": {"role": "user", "content": text},
        "parent_tool_use_id": None,
        "session_id": "",
    }


def control_request(subtype: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "control_request",
        "request_id": f"req_{uuid.uuid4().hex[:12]}",
        "request": {"subtype": subtype, **fields},
    }


def control_success(request_id: str, response: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "control_response",
        "response": {"subtype": "success", "request_id": request_id, "response": dict(response)},
    }


class CliExited(Exception):
    """The CLI's stdout ended while a test was still waiting for a frame."""


class CliProcess:
    """A running CLI: ``frames`` holds every stdout JSON line, in order."""

    def __init__(self, process: trio.Process, argv: Sequence[str]) -> None:
        self.process = process
        self.argv = list(argv)
        self.started = time.monotonic()
        self.frames: list[dict[str, Any]] = []
        self.frame_times: list[float] = []  # seconds since spawn, parallel to frames
        self.stderr = bytearray()
        self.noise: list[str] = []  # stdout lines that were not JSON objects
        self.stdout_closed = False
        self.drained = trio.Event()  # set once both stdout and stderr hit EOF
        self._changed = trio.Condition()
        self._cursor = 0
        self._open_pipes = 2

    # -- background readers ------------------------------------------------------

    async def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        buf = bytearray()
        try:
            while True:
                chunk = await self.process.stdout.receive_some(1 << 16)
                if not chunk:
                    break
                buf += chunk
                while (nl := buf.find(b"\n")) >= 0:
                    line = bytes(buf[:nl]).strip()
                    del buf[: nl + 1]
                    await self._add_line(line)
        finally:
            if buf.strip():
                await self._add_line(bytes(buf).strip())
            self.stdout_closed = True
            self._pipe_done()
            async with self._changed:
                self._changed.notify_all()

    def _pipe_done(self) -> None:
        self._open_pipes -= 1
        if self._open_pipes == 0:
            self.drained.set()

    async def _add_line(self, line: bytes) -> None:
        if not line:
            return
        if not line.startswith(b"{"):
            self.noise.append(line.decode("utf-8", "replace"))
            return
        self.frames.append(json.loads(line))
        self.frame_times.append(time.monotonic() - self.started)
        async with self._changed:
            self._changed.notify_all()

    async def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        try:
            while chunk := await self.process.stderr.receive_some(1 << 16):
                self.stderr += chunk
        finally:
            self._pipe_done()

    # -- talking to the CLI ------------------------------------------------------

    async def send(self, frame: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.send_all((json.dumps(frame) + "\n").encode())

    async def say(self, text: str) -> None:
        await self.send(user_message(text))

    async def next_frame(
        self, predicate: Callable[[dict[str, Any]], bool] = lambda f: True
    ) -> dict[str, Any]:
        """The next frame (after the ones already consumed) matching ``predicate``."""
        async with self._changed:
            while True:
                while self._cursor < len(self.frames):
                    frame = self.frames[self._cursor]
                    self._cursor += 1
                    if predicate(frame):
                        return frame
                if self.stdout_closed:
                    raise CliExited(
                        f"CLI stdout closed (returncode={self.process.returncode}); "
                        f"stderr={bytes(self.stderr[-2000:])!r}"
                    )
                await self._changed.wait()

    async def next_of_type(self, type_: str, subtype: str | None = None) -> dict[str, Any]:
        return await self.next_frame(
            lambda f: f.get("type") == type_ and (subtype is None or f.get("subtype") == subtype)
        )

    def mark(self) -> int:
        """Position in ``frames``; pair with ``frames_since``."""
        return self._cursor

    def frames_since(self, mark: int) -> list[dict[str, Any]]:
        return self.frames[mark : self._cursor]

    async def until_result(
        self, on_control: Callable[[dict[str, Any]], Mapping[str, Any] | None] | None = None
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Read up to the next ``result``; answer ``can_use_tool`` etc. with ``on_control``.

        ``on_control(request_frame)`` returns the ``response`` body to send (success) or
        None to leave the request unanswered. Returns (result, frames of this turn).
        """
        start = self.mark()
        while True:
            frame = await self.next_frame()
            if frame.get("type") == "control_request" and on_control is not None:
                answer = on_control(frame)
                if answer is not None:
                    await self.send(control_success(frame["request_id"], answer))
            if frame.get("type") == "result":
                return frame, self.frames_since(start)

    async def control(self, subtype: str, **fields: Any) -> dict[str, Any]:
        """Send a control request and wait for its response.

        Frames are only scanned, not consumed: turn frames that arrive meanwhile (and the
        response itself) are still returned by ``next_frame()`` later.
        """
        request = control_request(subtype, **fields)
        request_id = request["request_id"]
        seen = self._cursor  # taken before any checkpoint, so nothing can slip past
        await self.send(request)
        async with self._changed:
            while True:
                for frame in self.frames[seen:]:
                    if _is_response_to(frame, request_id):
                        return frame
                seen = len(self.frames)
                if self.stdout_closed:
                    raise CliExited(f"CLI exited before answering {subtype}")
                await self._changed.wait()

    async def close_stdin(self) -> None:
        if self.process.stdin is not None:
            with trio.CancelScope(shield=True):
                await self.process.stdin.aclose()

    async def wait(self) -> int:
        return await self.process.wait()


def _is_response_to(frame: dict[str, Any], request_id: str) -> bool:
    return (
        frame.get("type") == "control_response"
        and frame.get("response", {}).get("request_id") == request_id
    )


@asynccontextmanager
async def open_cli(
    binary: Path,
    *args: str,
    cwd: Path,
    env: Mapping[str, str],
    flags: Sequence[str] = STREAM_JSON_FLAGS,
    exit_timeout: float = 10.0,
) -> AsyncIterator[CliProcess]:
    """Run ``binary *flags *args`` in ``cwd`` with pipes; always reaps the process.

    On normal exit from the block: close stdin and wait (up to ``exit_timeout``) for the
    CLI to finish; on an exception or timeout: kill it.
    """
    argv = [str(binary), *flags, *args]
    process: trio.Process = await trio.lowlevel.open_process(
        argv,
        cwd=str(cwd),
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    cli = CliProcess(process, argv)
    ok = False
    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            nursery.start_soon(cli._read_stdout)
            nursery.start_soon(cli._read_stderr)
            try:
                yield cli
                ok = True
                await cli.close_stdin()
                with trio.move_on_after(exit_timeout):
                    await process.wait()
            finally:
                if process.returncode is None:
                    _kill(process)
                with trio.CancelScope(deadline=trio.current_time() + 5, shield=True):
                    await process.wait()
                # A grandchild may still hold the pipes: drain briefly, then stop reading.
                with trio.CancelScope(deadline=trio.current_time() + 2, shield=True):
                    await cli.drained.wait()
                nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:  # pragma: no cover - last resort
            _kill(process)
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                with trio.CancelScope(shield=True):
                    await pipe.aclose()
        if ok and process.returncode is not None and process.returncode < 0:
            raise AssertionError(
                f"CLI did not exit after stdin EOF within {exit_timeout}s (killed)"
            )


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """Re-raise a lone exception from a nursery as itself (nicer tracebacks, pytest.raises)."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if len(leaves) == 1 and not isinstance(leaves[0], trio.Cancelled):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def _kill(process: trio.Process) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
