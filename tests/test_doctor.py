"""`supervisor check`: every failing condition gets its own FAIL line and a non-zero exit.

The checks run in-process (`run_checks`) against the fake Mattermost in the same trio run,
with real agent processes; two tests run `python -m supervisor check` as a child process
for the exit status and the printed report.
"""

from __future__ import annotations

import fcntl
import functools
import os
import socket
import ssl
import sys
import time
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from supervisor.chat import ChatError, ChatUser
from supervisor.chat.mattermost import doctor as mattermost_doctor
from supervisor.chat.mattermost.config import MattermostConfig
from supervisor.chat.mattermost.doctor import account_result, shown_url, unreachable_result
from supervisor.checks import CheckResult, Limits, exit_status, format_report
from supervisor.config import Config, StateConfig, load_config
from supervisor.doctor import run_checks, state_dir_check
from supervisor.runtime.store import LOCK_NAME, held
from tests.fakes.mattermost import FakeMattermost
from tests.harness import FAKE_AGENT, REPO, world, write_toml

FAST = Limits(network_s=3, agent_s=10, disk_s=5)
ORDER = [
    "configuration",
    "server",
    "token",
    "account",
    "allowed user @alice",
    "agent",
    "state directory",
]


def closed_port() -> int:
    """A loopback port nobody listens on (bound, never listened, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {result.name: result for result in results}


def failed(results: list[CheckResult]) -> set[str]:
    return {result.name for result in results if not result.ok}


def with_state_dir(config: Config, directory: Path) -> Config:
    return attrs.evolve(config, state=StateConfig(dir=directory))


# --- in-process --------------------------------------------------------------------------


async def test_all_good(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            results = await run_checks(w.config, w.config_path, limits=FAST)
    assert [r.name for r in results] == ORDER
    assert failed(results) == set()
    assert exit_status(results) == 0
    checks = by_name(results)
    assert str(w.config_path) in checks["configuration"].detail
    assert "status OK" in checks["server"].detail
    assert checks["account"].detail == "@claude-bot, a bot account"
    assert checks["agent"].detail.startswith("2.1.330 (Claude Code), from `")
    assert str(tmp_path / "state") in checks["state directory"].detail
    assert all(r.fix == "" for r in results)
    assert w.server.stats.count("GET", "/api/v4/system/ping") == 1


async def test_closed_port_fails_the_server_and_skips_what_needs_it(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            url = f"http://127.0.0.1:{closed_port()}"
            w.configure(mattermost={"url": url})
            results = await run_checks(w.config, limits=FAST)
    checks = by_name(results)
    assert checks["server"].detail == f"{url} refused the connection"
    assert "mattermost.url" in checks["server"].fix
    for name in ("token", "account", "allowed user @alice"):
        assert checks[name].detail == "skipped: the server is not reachable"
        assert not checks[name].ok
    # The agent and the state directory do not need the server.
    assert checks["agent"].ok and checks["state directory"].ok
    assert exit_status(results) == 1


async def test_tls_to_a_plain_http_server_is_reported_as_tls(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(mattermost={"url": w.server.url.replace("http://", "https://")})
            results = await run_checks(w.config, limits=FAST)
    server = by_name(results)["server"]
    assert not server.ok
    assert server.detail.startswith("TLS handshake with 127.0.0.1 failed")
    assert "http://" in server.fix


async def test_a_server_that_does_not_answer_in_time(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.server.latency(30)
            started = trio.current_time()
            results = await run_checks(w.config, limits=attrs.evolve(FAST, network_s=0.5))
            elapsed = trio.current_time() - started
    checks = by_name(results)
    assert checks["server"].detail == f"no answer from {w.server.url} within 0.5 s"
    assert checks["token"].detail == "skipped: the server is not reachable"
    assert elapsed < 5


@pytest.mark.parametrize(
    ("status", "said", "fix"),
    [
        (404, "it does not look like Mattermost", "without /api/v4"),
        # A reverse proxy in front of a stopped Mattermost answers 502/503, Mattermost
        # itself 500 while unhealthy: the URL is right, only the server is down.
        (503, "the server (or the proxy in front of it) is unavailable", "check that Mattermost runs"),
    ],
)
async def test_a_ping_that_fails_says_whether_the_url_or_the_server_is_wrong(
    tmp_path: Path, status: int, said: str, fix: str
) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.server.fail_requests(status, path_prefix="/api/v4/system/ping")
            results = await run_checks(w.config, limits=FAST)
    server = by_name(results)["server"]
    assert not server.ok
    assert f"answered {status} to /api/v4/system/ping: {said}" in server.detail
    assert fix in server.fix


async def test_the_server_check_goes_through_the_environments_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As `run` does: behind a forward proxy, `check` said "cannot reach" a server `run` reached."""
    seen: list[bytes] = []

    async def proxy(stream: trio.SocketStream) -> None:  # answers every request itself
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        seen.append(data.split(b"\r\n", 1)[0])
        body = b'{"status": "OK"}'
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        await stream.send_all(head.encode() + body)
        await stream.aclose()

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    config = MattermostConfig(url="http://mm.example", allowed_users=("alice",), token="t")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(functools.partial(trio.serve_tcp, proxy, 0, host="127.0.0.1"))
            monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}")
            results = await mattermost_doctor.checks(config, FAST)
            nursery.cancel_scope.cancel()
    assert by_name(results)["server"].ok, results
    assert seen[0] == b"GET http://mm.example/api/v4/system/ping HTTP/1.1"


async def test_bad_token(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(mattermost={"token": "wrongtoken0123456789"})
            results = await run_checks(w.config, limits=FAST)
    checks = by_name(results)
    assert checks["server"].ok
    assert checks["token"].detail == "the token was refused (401)"
    assert "create a bot access token" in checks["token"].fix
    assert checks["account"].detail == "skipped: needs a valid token"
    assert checks["allowed user @alice"].detail == "skipped: needs a valid token"
    assert failed(results) == {"token", "account", "allowed user @alice"}
    assert "wrongtoken0123456789" not in format_report(results)


async def test_a_user_token_works_with_a_warning(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(mattermost={"token": w.alice.token})
            results = await run_checks(w.config, limits=FAST)
    account = by_name(results)["account"]
    assert account.ok
    assert account.detail == "@alice, a user account: it works, but a bot account is recommended"
    assert "Bot Accounts" in account.fix
    assert exit_status(results) == 0


async def test_unknown_allowed_user(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(mattermost={"allowed_users": ["alice", "@Nobody", "mallory"]})
            results = await run_checks(w.config, limits=FAST)
    checks = by_name(results)
    assert checks["allowed user @alice"].ok and checks["allowed user @mallory"].ok
    nobody = checks["allowed user @nobody"]
    assert nobody.detail == f"no user @nobody on {w.server.url}"
    assert "mattermost.allowed_users" in nobody.fix
    assert failed(results) == {"allowed user @nobody"}
    assert exit_status(results) == 1


async def test_agent_not_on_path(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(agent_command=["no-such-agent-4f1c"])
            results = await run_checks(w.config, limits=FAST)
    agent = by_name(results)["agent"]
    assert agent.detail == "agent.command: no-such-agent-4f1c was not found on PATH"
    assert "PATH is " in agent.fix and "full path" in agent.fix
    assert failed(results) == {"agent"}


async def test_agent_missing_at_a_path(tmp_path: Path) -> None:
    missing = tmp_path / "bin" / "claude"
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(agent_command=[str(missing)])
            results = await run_checks(w.config, limits=FAST)
    agent = by_name(results)["agent"]
    assert agent.detail == f"agent.command: {missing} does not exist"
    assert exit_status(results) == 1


async def test_agent_that_fails(tmp_path: Path) -> None:
    script = "import sys; print('no credentials', file=sys.stderr); sys.exit(3)"
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(agent_command=[sys.executable, "-c", script])
            results = await run_checks(w.config, limits=FAST)
    agent = by_name(results)["agent"]
    assert not agent.ok
    assert "exited with status 3: no credentials" in agent.detail


async def test_agent_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    # `sh -c SCRIPT sh --version`: a background child and a foreground one, both hanging.
    # The leftover-process fixture fails the test if either survives.
    hang = ["sh", "-c", "sleep 60 & sleep 60", "sh"]
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(agent_command=hang)
            started = time.monotonic()
            results = await run_checks(w.config, limits=attrs.evolve(FAST, agent_s=0.5))
            elapsed = time.monotonic() - started
    agent = by_name(results)["agent"]
    assert agent.detail == (
        "`sh -c 'sleep 60 & sleep 60' sh --version` gave no answer within 0.5 s and was killed"
    )
    assert elapsed < 5


async def test_agent_that_answers_but_leaves_a_child_behind(tmp_path: Path) -> None:
    # The group is killed after a normal exit too; the fixture checks the `sleep` is gone.
    leaves = ["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo 9.9.9", "sh"]
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            w.configure(agent_command=leaves)
            results = await run_checks(w.config, limits=FAST)
    agent = by_name(results)["agent"]
    assert agent.ok
    assert (
        agent.detail == "9.9.9, from `sh -c 'sleep 60 >/dev/null 2>&1 & echo 9.9.9' sh --version`"
    )


async def test_state_dir_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    directory = blocker / "state"
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            results = await run_checks(with_state_dir(w.config, directory), limits=FAST)
    state = by_name(results)["state directory"]
    assert state.detail == f"cannot create {directory}: Not a directory"
    assert str(directory) in state.fix and "state.dir" in state.fix
    assert failed(results) == {"state directory"}


async def test_missing_state_dir_is_reported_creatable_and_not_created(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "state"
    with trio.fail_after(30):
        async with world(tmp_path) as w:
            results = await run_checks(with_state_dir(w.config, directory), limits=FAST)
    state = by_name(results)["state directory"]
    assert state.ok
    assert state.detail == f"{directory} does not exist yet; `run` will create it"
    assert not (tmp_path / "new").exists(), "check is read-only: it creates nothing"


# --- pure parts ------------------------------------------------------------------------


def test_report_is_aligned_with_fixes_below_and_a_summary() -> None:
    results = [
        CheckResult("configuration", True, "/etc/s.toml is valid"),
        CheckResult("token", False, "the token was refused (401)", "make a new one"),
        CheckResult("allowed user @bob", True, "exists\n\x1b[31mred"),
    ]
    assert format_report(results).splitlines() == [
        "configuration      ok    /etc/s.toml is valid",
        "token              FAIL  the token was refused (401)",
        "                         fix: make a new one",
        "allowed user @bob  ok    exists [31mred",
        "1 of 3 checks failed",
    ]
    assert format_report(results[:1]).splitlines()[-1] == "all 1 checks passed"
    assert exit_status(results) == 1
    assert exit_status(results[:1]) == 0


def test_network_errors_are_named_plainly() -> None:
    refused = httpx.ConnectError("all attempts to connect failed")
    refused.__cause__ = ExceptionGroup(
        "all failed", [ConnectionRefusedError(111, "Connection refused")]
    )
    assert unreachable_result(refused, "http://h:1").detail == "http://h:1 refused the connection"

    dns = httpx.ConnectError("lookup")
    dns.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert unreachable_result(dns, "https://chat.invalid").detail == (
        "cannot resolve the host name chat.invalid: Name or service not known"
    )

    cert = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] verify failed")
    cert.verify_message = "self-signed certificate"
    tls = httpx.ConnectError("")
    tls.__cause__ = trio.BrokenResourceError()
    tls.__cause__.__cause__ = cert
    result = unreachable_result(tls, "https://chat.example")
    assert (
        result.detail == "TLS: the certificate of chat.example was refused: self-signed certificate"
    )
    assert "SSL_CERT_FILE" in result.fix

    bare = unreachable_result(ChatError(0, "unreachable", "ConnectError"), "http://h")
    assert bare.detail == "cannot reach http://h: 0 unreachable: ConnectError"


def test_url_credentials_are_never_shown() -> None:
    assert shown_url("https://bob:s3cret@chat.example:8065/x") == "https://chat.example:8065/x"
    assert shown_url("https://chat.example") == "https://chat.example"


def test_account_kinds() -> None:
    assert account_result(ChatUser("b", "bot", is_bot=True)).fix == ""
    person = account_result(ChatUser("u", "carol"))
    assert person.ok and "bot account is recommended" in person.detail


# --- the command, as a child process -------------------------------------------------------


def write_config(tmp_path: Path, server: FakeMattermost, **tables: dict[str, object]) -> Path:
    (tmp_path / "home").mkdir(exist_ok=True)
    path = tmp_path / "supervisor.toml"
    write_toml(
        path,
        {
            "mattermost": {
                "url": server.url,
                "token": server.bot_token,
                "allowed_users": ["alice"],
                **tables.get("mattermost", {}),
            },
            "agent": {
                "command": [sys.executable, str(FAKE_AGENT)],
                "env": {"HOME": str(tmp_path / "home")},
                "default_cwd": str(tmp_path),
                **tables.get("agent", {}),
            },
            "state": {"dir": str(tmp_path / "state"), **tables.get("state", {})},
        },
    )
    load_config(path, {})  # the file itself must be valid: only the checks may fail
    return path


async def run_cli(config_path: Path) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SUPERVISOR_MATTERMOST_TOKEN": "",
        "SUPERVISOR_MATTERMOST_URL": "",
    }
    done = await trio.run_process(
        [sys.executable, "-m", "supervisor", "check", "--config", str(config_path)],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        env=env,
        cwd=config_path.parent,
    )
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def test_cli_all_good_exits_0(tmp_path: Path) -> None:
    server = FakeMattermost()
    server.add_user("alice")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            code, out, err = await run_cli(write_config(tmp_path, server))
            nursery.cancel_scope.cancel()
    lines = out.splitlines()
    assert code == 0, out + err
    assert [line.split()[0] for line in lines[:-1]] == [
        "configuration", "server", "token", "account", "allowed", "agent", "state",
    ]  # fmt: skip
    assert all("  ok  " in line for line in lines[:-1])
    assert lines[-1] == "all 7 checks passed"
    assert server.bot_token not in out + err


async def test_cli_reports_every_failure_and_exits_1(tmp_path: Path) -> None:
    server = FakeMattermost()
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    bad_state = blocker / "state"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            # The bot's token is fine here so the user lookups run; nobody is unknown.
            path = write_config(
                tmp_path,
                server,
                mattermost={"allowed_users": ["nobody"]},
                agent={"command": ["no-such-agent-4f1c"]},
            )
            code, out, err = await run_cli(path)
            # And a refused token, in a second run.
            token_path = write_config(tmp_path, server, mattermost={"token": "wrongtoken0123"})
            token_code, token_out, token_err = await run_cli(token_path)
            nursery.cancel_scope.cancel()
    assert code == 1, out + err
    fails = [line for line in out.splitlines() if "  FAIL  " in line]
    assert [line.split("  FAIL  ")[0].strip() for line in fails] == [
        "allowed user @nobody",
        "agent",
    ]
    assert f"no user @nobody on {server.url}" in out
    assert "agent.command: no-such-agent-4f1c was not found on PATH" in out
    assert out.splitlines()[-1] == "2 of 7 checks failed"
    # A state.dir under a file is refused with the configuration (exit 2, naming the key);
    # one that became so since is said by the check.
    assert state_dir_check(bad_state).detail == f"cannot create {bad_state}: Not a directory"

    assert token_code == 1
    assert "token" in token_out and "the token was refused (401)" in token_out
    assert "wrongtoken0123" not in token_out + token_err
    assert server.bot_token not in out + err


async def test_cli_against_a_closed_port_exits_1_quickly(tmp_path: Path) -> None:
    server = FakeMattermost()  # not serving: only its token is used
    server.url = f"http://127.0.0.1:{closed_port()}"
    with trio.fail_after(60):
        started = time.monotonic()
        code, out, err = await run_cli(write_config(tmp_path, server))
        elapsed = time.monotonic() - started
    assert code == 1, out + err
    assert f"{server.url} refused the connection" in out
    assert out.count("skipped: the server is not reachable") == 3
    assert elapsed < 20


def test_a_state_dir_a_running_supervisor_holds_is_named_with_its_pid_and_stays_held(tmp_path: Path) -> None:
    """Read from /proc/locks, not tried: a start at that moment must not be refused."""
    assert "in use" not in state_dir_check(tmp_path).detail
    with held(tmp_path):
        result = state_dir_check(tmp_path)
        assert result.ok and result.detail.endswith(f"; in use by a running supervisor (pid {os.getpid()})")
        with open(tmp_path / LOCK_NAME) as other, pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # still ours: check took nothing


def test_a_state_dir_with_little_room_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    room = os.statvfs(tmp_path)
    little = os.statvfs_result((room.f_bsize, 4096, room.f_blocks, 100, 100, room.f_files, room.f_ffree,
                                room.f_favail, room.f_flag, room.f_namemax))
    monkeypatch.setattr(os, "statvfs", lambda _path: little)
    result = state_dir_check(tmp_path)
    assert not result.ok
    assert result.detail == f"only 0.4 MiB free where {tmp_path} is (prompts wait while the state cannot be written)"
    assert "make room" in result.fix
