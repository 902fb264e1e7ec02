"""`supervisor check`: the doctor. One line per check, `ok` or `FAIL`, and how to fix it.

Checks, in this order: the configuration (already loaded by the CLI), the server answers a
ping, the token is accepted, whose token it is (bot or user), each allowed user exists, the
agent command runs (`<agent.command> --version`), the state directory is writable (or can
be created).

This module owns those checks and their report. Each check is a small function returning a
`CheckResult`; turning results into text (`format_report`) and an exit status
(`exit_status`) is pure. The trio part (`run_checks`) only gathers results: the server
chain, the agent and the state directory run side by side, because the last two do not
need the server. Checks that do need it are reported as skipped (and failed) when it is
unreachable or the token is refused.

It must never:
- change anything on disk: a daemon may be running on the same state directory, so the
  state check asks the file system (`os.access`) instead of creating or writing anything;
- print the token, or any URL credentials (the report is meant to be pasted into a ticket);
- wait without bound: every network call and the agent run under a cancel scope
  (`Limits`), and `MattermostRest`'s retry-forever methods rely on that;
- leave a child process behind: the agent runs in its own process group, which is killed
  whole, and always waited for, whether it answered, failed or hung.
"""

from __future__ import annotations

import functools
import os
import shlex
import signal
import socket
import ssl
import subprocess
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx
import trio

from supervisor.agent.claude import SCRUBBED_ENV
from supervisor.agent.doctor import agent_side_checks
from supervisor.chat import ChatError, ChatUser
from supervisor.chat.mattermost.rest import MattermostRest
from supervisor.chat.tls import ssl_context
from supervisor.config import AgentConfig, Config
from supervisor.runtime.agent_process import kill_group

__all__ = ["CheckResult", "Limits", "check", "exit_status", "format_report", "run_checks"]

T = TypeVar("T")

_MAX_OUTPUT = 64 * 1024  # of `--version` output kept; a version is one short line
_MAX_DETAIL = 200  # characters of server- or agent-supplied text shown in one line

TOKEN_FIX: Final = (
    "create a bot access token (System Console > Integrations > Bot Accounts > "
    "Create New Token) and put it in mattermost.token_file or SUPERVISOR_MATTERMOST_TOKEN"
)
SERVER_FIX: Final = (
    "check mattermost.url (scheme, host and port: the address you open Mattermost at "
    "in a browser) and that the server is running"
)


@attrs.frozen
class CheckResult:
    """One line of the report. `fix` is "" when there is nothing to do."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@attrs.frozen
class Limits:
    """How long each kind of check may take, in seconds."""

    network_s: float = 5.0  # one REST request
    agent_s: float = 10.0  # `<agent.command> --version`, start to exit
    disk_s: float = 10.0  # create, write, fsync and delete the probe file


LIMITS: Final = Limits()


# --- the report (pure) ---------------------------------------------------------------


def format_report(results: Sequence[CheckResult]) -> str:
    """The aligned text the doctor prints: name, ok/FAIL, detail, then `fix:` below."""
    width = max((len(result.name) for result in results), default=0)
    lines = []
    for result in results:
        label = "ok" if result.ok else "FAIL"
        lines.append(f"{result.name:<{width}}  {label:<4}  {_one_line(result.detail)}".rstrip())
        if result.fix:
            lines.append(f"{'':<{width}}        fix: {_one_line(result.fix)}")
    failed = sum(not result.ok for result in results)
    if failed:
        lines.append(f"{failed} of {len(results)} checks failed")
    else:
        lines.append(f"all {len(results)} checks passed")
    return "\n".join(lines) + "\n"


def exit_status(results: Sequence[CheckResult]) -> int:
    return 0 if all(result.ok for result in results) else 1


def _one_line(text: str) -> str:
    # Details may quote a server's or a program's own words: keep each check on one line
    # and keep terminal escapes out.
    flat = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(flat.split())


def _clipped(text: str) -> str:
    text = _one_line(text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def shown_url(url: str) -> str:
    """`url` without credentials (`https://user:secret@host` is a valid URL)."""
    try:
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return url
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "the configured URL"


# --- results that need no I/O ----------------------------------------------------------


def configuration_result(config_path: Path | None) -> CheckResult:
    where = str(config_path) if config_path is not None else "the configuration"
    return CheckResult("configuration", True, f"{where} is valid")


def timed_out(name: str, seconds: float, what: str, fix: str) -> CheckResult:
    return CheckResult(name, False, f"{what} within {seconds:g} s", fix)


def skipped(name: str, reason: str) -> CheckResult:
    return CheckResult(name, False, f"skipped: {reason}")


def unreachable_result(error: BaseException, url: str) -> CheckResult:
    """The server check, failed before any HTTP answer: say plainly what went wrong."""
    cause = _root_cause(error)
    host = urlsplit(url).hostname or url
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = getattr(cause, "verify_message", None) or "not trusted"
        return CheckResult(
            "server",
            False,
            f"TLS: the certificate of {host} was refused: {reason}",
            "install the CA that signed it into the system trust store (or point "
            "SSL_CERT_FILE at it), or fix the host name in mattermost.url",
        )
    if isinstance(cause, ssl.SSLError):
        return CheckResult(
            "server",
            False,
            f"TLS handshake with {host} failed: {getattr(cause, 'reason', None) or cause}",
            "use https:// only if the server speaks TLS on that port (http:// otherwise)",
        )
    if isinstance(cause, socket.gaierror):
        return CheckResult(
            "server",
            False,
            f"cannot resolve the host name {host}: {cause.strerror or cause}",
            "check the host name in mattermost.url and this machine's DNS",
        )
    if isinstance(cause, ConnectionRefusedError):
        return CheckResult("server", False, f"{url} refused the connection", SERVER_FIX)
    if isinstance(cause, OSError) and cause.strerror:
        return CheckResult("server", False, f"cannot reach {url}: {cause.strerror}", SERVER_FIX)
    what = _clipped(str(cause)) or type(cause).__name__
    return CheckResult("server", False, f"cannot reach {url}: {what}", SERVER_FIX)


def _root_cause(error: BaseException) -> BaseException:
    """The innermost cause: httpx -> httpcore -> trio -> (an exception group of) OSError."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup) and error.exceptions:
            error = error.exceptions[0]  # trio: one per address tried; the first says enough
        elif error.__cause__ is not None:
            error = error.__cause__
        elif error.__context__ is not None:  # httpcore re-raises `from None`: look anyway
            error = error.__context__
        else:
            break
    return error


def not_mattermost_result(error: ChatError, url: str) -> CheckResult:
    answer = f"{error.status}" if error.status else "an answer"
    if error.error_id == "malformed_response":
        answer = f"a {error.status} that is not Mattermost's JSON"
    return CheckResult(
        "server",
        False,
        f"{url} answered {answer} to /api/v4/system/ping: it does not look like Mattermost",
        "set mattermost.url to the address you open Mattermost at in a browser, without /api/v4",
    )


def ping_result(status: str, url: str) -> CheckResult:
    if status.upper() == "OK":
        return CheckResult("server", True, f"{url} answers (status OK)")
    shown = _clipped(status) or "no status"
    return CheckResult(
        "server", False, f"{url} answers but reports {shown}", "check the server's health"
    )


def token_refused_result(error: ChatError) -> CheckResult:
    if error.status == 401:
        return CheckResult("token", False, "the token was refused (401)", TOKEN_FIX)
    said = _clipped(error.message) or error.error_id or "no reason given"
    return CheckResult("token", False, f"GET /users/me failed: {error.status} {said}", TOKEN_FIX)


def account_result(me: ChatUser) -> CheckResult:
    if me.is_bot:
        return CheckResult("account", True, f"@{me.username}, a bot account")
    return CheckResult(
        "account",
        True,
        f"@{me.username}, a user account: it works, but a bot account is recommended",
        "create a bot (System Console > Integrations > Bot Accounts) and use its token, "
        "so answers are not posted as a person",
    )


def allowed_user_name(username: str) -> str:
    return f"allowed user @{username}"


def allowed_user_result(username: str, user: ChatUser | None, url: str) -> CheckResult:
    name = allowed_user_name(username)
    if user is None:
        return CheckResult(
            name,
            False,
            f"no user @{username} on {url}",
            "check the spelling in mattermost.allowed_users (usernames, not display "
            "names) or create the account",
        )
    return CheckResult(name, True, "exists" + (" (a bot account)" if user.is_bot else ""))


# --- checks that talk to the server ----------------------------------------------------


class _Witness(httpx.AsyncBaseTransport):
    """A transport that remembers the last error: `MattermostRest` reduces an unreachable
    server to the error's class name, and the doctor must say *why* (refused, DNS, TLS)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.error: Exception | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except Exception as exc:
            self.error = exc
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


async def server_check(rest: MattermostRest, witness: _Witness, url: str) -> CheckResult:
    try:
        return ping_result(await rest.ping(), url)
    except ChatError as error:
        if error.status == 0:
            return unreachable_result(witness.error or error, url)
        return not_mattermost_result(error, url)
    except httpx.HTTPError as error:  # not worth a retry to the client: a bad URL, say
        return unreachable_result(error, url)


async def token_check(rest: MattermostRest) -> tuple[CheckResult, ChatUser | None]:
    try:
        me = await rest.get_me()
    except ChatError as error:
        return token_refused_result(error), None
    return CheckResult("token", True, "accepted"), me


async def allowed_user_check(rest: MattermostRest, username: str, url: str) -> CheckResult:
    try:
        user = await rest.user_by_username(username)
    except ChatError as error:
        said = _clipped(error.message) or error.error_id or "no reason given"
        return CheckResult(
            allowed_user_name(username),
            False,
            f"cannot look it up: {error.status} {said}",
            "the bot needs permission to read users (a bot or user account has it)",
        )
    return allowed_user_result(username, user, url)


async def _within(seconds: float, fallback: T, work: Callable[[], Awaitable[T]]) -> T:
    with trio.move_on_after(seconds):
        return await work()
    return fallback


async def server_checks(config: Config, limits: Limits) -> list[CheckResult]:
    """Server, token, account, then one line per allowed user; each request bounded."""
    mattermost = config.mattermost
    assert mattermost is not None
    url = shown_url(mattermost.url)
    users = mattermost.allowed_users
    witness = _Witness(httpx.AsyncHTTPTransport(verify=ssl_context()))
    rest = MattermostRest(
        mattermost.url,
        mattermost.token,
        transport=witness,
        requests_per_second=mattermost.requests_per_second,
    )
    wait = limits.network_s
    try:
        server = await _within(
            wait,
            timed_out("server", wait, f"no answer from {url}", SERVER_FIX),
            lambda: server_check(rest, witness, url),
        )
        if not server.ok:
            reason = "the server is not reachable"
            rest_of = ["token", "account", *map(allowed_user_name, users)]
            return [server, *(skipped(name, reason) for name in rest_of)]
        late: tuple[CheckResult, ChatUser | None] = (
            timed_out("token", wait, "no answer to GET /users/me", "check the server's health"),
            None,
        )
        token, me = await _within(wait, late, lambda: token_check(rest))
        if me is None:
            reason = "needs a valid token"
            rest_of = ["account", *map(allowed_user_name, users)]
            return [server, token, *(skipped(name, reason) for name in rest_of)]
        results = [server, token, account_result(me)]
        for username in users:
            slow = timed_out(allowed_user_name(username), wait, "no answer", "")
            lookup = functools.partial(allowed_user_check, rest, username, url)
            results.append(await _within(wait, slow, lookup))
        return results
    finally:
        with trio.CancelScope(shield=True):
            await rest.aclose()


# --- the agent -------------------------------------------------------------------------


def agent_environment(agent: AgentConfig, base: Mapping[str, str]) -> dict[str, str]:
    """What the agent is started with, as `ClaudeBackend.env` builds it."""
    env = {name: value for name, value in base.items() if name not in SCRUBBED_ENV}
    env.update(agent.env)
    return env


def agent_version_argv(agent: AgentConfig) -> list[str]:
    return [*agent.command, "--version"]


def _shown_argv(argv: Sequence[str]) -> str:
    return shlex.join(argv)


def agent_start_failed(agent: AgentConfig, error: OSError, path: str) -> CheckResult:
    program = agent.command[0]
    if isinstance(error, FileNotFoundError) and error.filename == str(agent.default_cwd):
        return CheckResult(
            "agent",
            False,
            f"agent.default_cwd {agent.default_cwd} does not exist",
            "create it or set agent.default_cwd to an existing directory",
        )
    if isinstance(error, FileNotFoundError):
        if "/" in program:
            return CheckResult(
                "agent",
                False,
                f"agent.command: {program} does not exist",
                "install Claude Code or correct the path in agent.command",
            )
        return CheckResult(
            "agent",
            False,
            f"agent.command: {program} was not found on PATH",
            "install Claude Code (npm install -g @anthropic-ai/claude-code) or set "
            f"agent.command to its full path; PATH is {path or '(empty)'}",
        )
    if isinstance(error, PermissionError):
        return CheckResult(
            "agent",
            False,
            f"agent.command: {program} cannot be run: {error.strerror}",
            f"make {program} executable (chmod +x) or point agent.command at the real program",
        )
    return CheckResult(
        "agent",
        False,
        f"agent.command: {program} cannot be started: {error.strerror or error}",
        "check agent.command",
    )


def agent_result(argv: Sequence[str], code: int, stdout: bytes, stderr: bytes) -> CheckResult:
    shown = _shown_argv(argv)
    if code != 0:
        said = _last_line(stderr) or _last_line(stdout)
        why = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return CheckResult(
            "agent",
            False,
            f"`{shown}` {why}" + (f": {said}" if said else ""),
            f"run `{shown}` by hand to see what is wrong",
        )
    version = _first_line(stdout) or "no version printed"
    return CheckResult("agent", True, f"{version}, from `{shown}`")


def agent_hung_result(argv: Sequence[str], seconds: float) -> CheckResult:
    shown = _shown_argv(argv)
    return CheckResult(
        "agent",
        False,
        f"`{shown}` gave no answer within {seconds:g} s and was killed",
        f"run `{shown}` by hand to see what it waits for (a prompt, a login, the network?)",
    )


def _first_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return _clipped(lines[0]) if lines else ""


def _last_line(data: bytes) -> str:
    lines = [line for line in data.decode(errors="replace").splitlines() if line.strip()]
    return _clipped(lines[-1]) if lines else ""


async def _collect(stream: trio.abc.ReceiveStream, sink: bytearray) -> None:
    # Read to the end (a full pipe would block the program), keep only the start.
    while chunk := await stream.receive_some(65536):
        if len(sink) < _MAX_OUTPUT:
            sink += chunk[: _MAX_OUTPUT - len(sink)]


async def agent_check(agent: AgentConfig, env: Mapping[str, str]) -> CheckResult:
    """`<agent.command> --version` in its own process group. Cancelling this (the caller's
    time limit) kills the whole group; so does a normal end, for anything it left behind."""
    argv = agent_version_argv(agent)
    try:
        proc = await trio.lowlevel.open_process(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=agent.default_cwd,
            env=dict(env),
            start_new_session=True,
        )
    except OSError as error:
        return agent_start_failed(agent, error, env.get("PATH", ""))
    stdout, stderr = bytearray(), bytearray()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_collect, proc.stdout, stdout)
            nursery.start_soon(_collect, proc.stderr, stderr)
        code = await proc.wait()
    finally:
        with trio.CancelScope(shield=True):
            kill_group(proc.pid, signal.SIGKILL)
            if proc.returncode is None:
                proc.kill()  # it left our group (setsid): the group signal missed it
            await proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    await stream.aclose()
    return agent_result(argv, code, bytes(stdout), bytes(stderr))


# --- the state directory ---------------------------------------------------------------


def state_dir_check(directory: Path) -> CheckResult:
    """Can `run` write in `directory` (or create it)? Asks only: creates and writes nothing.

    Blocking file system calls: run it in a thread.
    """
    fix = f"set state.dir to a directory this user can write, or fix the permissions of {directory}"
    if directory.exists():
        if not directory.is_dir():
            return CheckResult("state directory", False, f"{directory} is not a directory", fix)
        if not os.access(directory, os.W_OK | os.X_OK):
            return CheckResult("state directory", False, f"cannot write in {directory}: Permission denied", fix)
        return CheckResult("state directory", True, f"{directory} is writable")
    parent = directory.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return CheckResult("state directory", False, f"cannot create {directory}: Not a directory", fix)
    if not os.access(parent, os.W_OK | os.X_OK):
        return CheckResult("state directory", False, f"cannot create {directory}: Permission denied", fix)
    return CheckResult("state directory", True, f"{directory} does not exist yet; `run` will create it")


# --- gathering ---------------------------------------------------------------------------


async def run_checks(
    config: Config, config_path: Path | None = None, *, limits: Limits = LIMITS
) -> list[CheckResult]:
    """Every check's result, in report order. The server chain, the agent and the state
    directory run concurrently; none of them raises for a failed check."""
    found: dict[str, list[CheckResult]] = {}

    async def server() -> None:
        found["server"] = await server_checks(config, limits) if config.mattermost else []
        if config.web is not None:
            from supervisor.chat.web import doctor as web_doctor

            lines = web_doctor.checks(config.web.listen, config.web.allow_remote, config.state.dir)
            found["server"] += [CheckResult(c.name, c.ok, c.detail, c.fix) for c in lines]
        if config.telegram is not None:
            from supervisor.chat.telegram import doctor as telegram_doctor

            checked = await telegram_doctor.config_checks(config.telegram, network_s=limits.network_s)
            found["server"] += [CheckResult(c.name, c.ok, c.detail, c.fix) for c in checked]

    async def agent() -> None:
        found["agent"] = []
        if config.agent.protocol == "claude":
            argv = agent_version_argv(config.agent)
            env = agent_environment(config.agent, os.environ)
            found["agent"] = [
                await _within(
                    limits.agent_s,
                    agent_hung_result(argv, limits.agent_s),
                    lambda: agent_check(config.agent, env),
                )
            ]
        # ACP agents and `[agents.NAME]`: each agent side's own check (starts, answers).
        for name, ok, detail, fix in await agent_side_checks(config, limits.agent_s):
            found["agent"].append(CheckResult(name, ok, detail, fix))

    async def state() -> None:
        directory = config.state.dir
        slow = timed_out(
            "state directory", limits.disk_s, f"{directory} did not answer", "check the disk"
        )
        found["state"] = [
            await _within(
                limits.disk_s,
                slow,
                # A hung mount must not hang the doctor: the thread is abandoned on timeout.
                lambda: trio.to_thread.run_sync(state_dir_check, directory, abandon_on_cancel=True),
            )
        ]

    async with trio.open_nursery() as nursery:
        for task in (server, agent, state):
            nursery.start_soon(task)
    return [configuration_result(config_path), *found["server"], *found["agent"], *found["state"]]


def check(config: Config, config_path: Path | None = None) -> int:
    """The `check` command: print the report on stdout, return the exit status."""
    results = trio.run(run_checks, config, config_path)
    print(format_report(results), end="", flush=True)
    return exit_status(results)
