"""The supervisor as a real child process: signals, exit codes, configuration errors."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from tests.harness import REPO, world, write_toml
from tests.reposts import nothing_to_post_again
from tests.web_supervisor import SupervisorProcess


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
async def test_sigterm_or_sighup_with_three_busy_sessions_exits_0_within_10s_leaving_no_agent(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """SIGHUP: the terminal a person ran it in was closed (the agents, in sessions of their
    own, are not told); a stop as graceful as systemd's SIGTERM."""
    async with world(tmp_path) as w:
        process = w.spawn()
        roots = [await w.new_session(f"busy{n}") for n in range(3)]
        for root in roots:
            await w.say("[slow 30] keep streaming", root)
        await w.wait_for(lambda: len(w.agent_starts()) == 3 and all(
            "keep streaming" in w.thread_text(r) or w.bot_posts(r) for r in roots), 30)
        await trio.sleep(1)  # the turns are running
        agents = [(s["pid"], s["pgid"]) for s in w.agent_starts()]
        assert all(_group_alive(pgid) for _, pgid in agents)
        started = time.monotonic()
        process.send_signal(signum)
        with trio.fail_after(10):
            while process.poll() is None:
                await trio.sleep(0.02)
        assert process.returncode == 0, w.log_text()
        assert f"received {signum.name}: stopping" in w.log_text()
        assert time.monotonic() - started < 10
        for pid, pgid in agents:
            assert not _group_alive(pgid), f"agent group {pgid} outlived the supervisor"
            assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
        assert w.server.bot_token not in w.log_text()


CONFIG_ERRORS = {
    "unknown key": ({"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": ["a"], "colour": 1}}, "mattermost.colour"),
    "wrong type": ({"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": ["a"]}, "agent": {"turn_timeout_s": "long"}}, "agent.turn_timeout_s"),
    "empty allowed_users": ({"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": []}}, "mattermost.allowed_users"),
    "missing token": ({"mattermost": {"url": "http://127.0.0.1:9", "allowed_users": ["a"]}}, "mattermost.token"),
    "cwd that does not exist": ({"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": ["a"]}, "agent": {"default_cwd": "/no/such/dir"}}, "agent.default_cwd"),
    "an [agents.NAME] value [agent] refuses": ({"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": ["a"]}, "agents.oc": {"command": ["x"], "shutdown_grace_s": 0}}, "agents.oc.shutdown_grace_s"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_ERRORS))
def test_configuration_errors_exit_2_naming_the_key_and_start_nothing(tmp_path: Path, case: str) -> None:
    tables, key = CONFIG_ERRORS[case]
    config = tmp_path / "supervisor.toml"
    write_toml(config, {**tables, "state": {"dir": str(tmp_path / "state")}})  # type: ignore[dict-item]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_MATTERMOST")}
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, env={**env, "PYTHONPATH": str(REPO)}, cwd=tmp_path,
    )
    assert result.returncode == 2
    message = result.stderr.strip()
    assert key in message and "\n" not in message, message
    assert not (tmp_path / "state").exists(), "a bad configuration must start nothing"


def test_a_session_cwd_that_does_not_exist_is_named(tmp_path: Path) -> None:
    config = tmp_path / "supervisor.toml"
    write_toml(
        config,
        {"mattermost": {"url": "http://127.0.0.1:9", "token": "t", "allowed_users": ["a"]}},
        sessions=[{"name": "x", "cwd": "/no/such/place"}],
    )
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", str(config)],
        capture_output=True, text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2 and "sessions[0].cwd" in result.stderr


def test_the_state_directory_a_first_start_makes_is_private(tmp_path: Path) -> None:
    """README: a state directory the supervisor creates is 0700 and every file in it 0600,
    with the web chat too (its token is made before the store opens the directory)."""
    product = SupervisorProcess(tmp_path)  # the embedded default: the web chat alone
    try:
        product.start()
        modes = {path.name: stat.S_IMODE(path.stat().st_mode) for path in product.state_dir.iterdir()}
        assert stat.S_IMODE(product.state_dir.stat().st_mode) == 0o700
        assert "web-token" in modes and set(modes.values()) == {0o600}, modes
        assert product.stop() == 0
    finally:
        product.close()


def test_with_json_logs_every_line_is_json_and_the_web_address_is_one_of_them(tmp_path: Path) -> None:
    """The web chat's address (with its token, for the person) is no log line, but it is
    written as a JSON line too, so a reader of JSON lines reads all of stderr."""
    product = SupervisorProcess(tmp_path)
    try:
        url = product.start(20, "--log-format", "json")
        assert product.stop() == 0
        lines = [json.loads(line) for line in product.stderr().splitlines()]
        assert all({"t", "level", "logger", "msg"} <= line.keys() for line in lines)
        told = [(line["logger"], line["msg"]) for line in lines if product.token() in line["msg"]]
        assert told == [("supervisor.address", f"Web chat: open {url} in a browser (the address carries the access token)")]
    finally:
        product.close()


def test_no_arguments_prints_usage_and_version_works() -> None:
    bare = subprocess.run([sys.executable, "-m", "supervisor"], capture_output=True, text=True, timeout=30)
    assert bare.returncode == 2 and "usage" in bare.stderr
    version = subprocess.run([sys.executable, "-m", "supervisor", "--version"], capture_output=True, text=True, timeout=30)
    assert version.returncode == 0 and version.stdout.startswith("supervisor ")
    helped = subprocess.run([sys.executable, "-m", "supervisor", "--help"], capture_output=True, text=True, timeout=30)
    assert helped.returncode == 0 and "Mattermost, Telegram or the local web chat" in helped.stdout
    run_help = subprocess.run([sys.executable, "-m", "supervisor", "run", "--help"], capture_output=True, text=True, timeout=30)
    assert run_help.returncode == 0 and "JSON objects, one per line" in run_help.stdout  # what --log-format does


async def test_sessions_subcommand_reads_the_table_without_a_server(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        supervisor = await w.start()
        await w.new_session("alpha")
        # Its announcement is recorded just after its thread shows (a stop before that
        # leaves it for the next start to finish, with no root id yet).
        await w.wait_for(lambda: any(r.root_id and not r.answer_pending for r in supervisor.store.state.sessions.values()))
        await w.stop()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    table = subprocess.run([sys.executable, "-m", "supervisor", "sessions", "--config", str(w.config_path)],
                           capture_output=True, text=True, timeout=30, env=env)
    assert table.returncode == 0 and "alpha" in table.stdout and "live" in table.stdout
    as_json = subprocess.run([sys.executable, "-m", "supervisor", "sessions", "--json", "--config", str(w.config_path)],
                             capture_output=True, text=True, timeout=30, env=env)
    rows = json.loads(as_json.stdout)
    assert [r["name"] for r in rows] == ["alpha"] and rows[0]["root_id"] and rows[0]["cwd"].endswith("alpha")


async def test_json_logs_carry_no_secrets(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run", "--config", str(w.config_path), "--log-format", "json"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, cwd=tmp_path,
        )
        w.process = process
        with trio.fail_after(20):
            await w.server.wait_for_websocket(count=1)
        process.send_signal(signal.SIGTERM)
        _, err = await trio.to_thread.run_sync(process.communicate)
        lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
        assert lines and all({"t", "level", "logger", "msg"} <= line.keys() for line in lines)
        assert w.server.bot_token not in err.decode()
        assert process.returncode == 0


async def test_sigterm_exits_within_10s_even_with_a_long_grace_and_agents_that_ignore_sigterm(tmp_path: Path) -> None:
    """Issue 9, defect 4: a 30 s grace and four agents deaf to stdin EOF and SIGTERM. The
    whole stop (interrupt, settle, end every agent, flush) still fits in 10 s: agents are
    ended in parallel and the grace is cut to what the stop's deadline leaves."""
    async with world(tmp_path) as w:
        w.configure(agent={"shutdown_grace_s": 30})
        process = w.spawn()
        roots = [await w.new_session(f"deaf{n}") for n in range(4)]
        for root in roots:
            await w.say("[stubborn] ignore everything", root)
        await w.wait_for(lambda: sum(
            1 for line in w.agent_lines() if line.get("event") == "note" and "ignored" in str(line.get("what"))) == 4, 30)
        agents = [(s["pid"], s["pgid"]) for s in w.agent_starts()]
        assert len(agents) == 4
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(12):
            while process.poll() is None:
                await trio.sleep(0.02)
        took = time.monotonic() - started
        assert process.poll() == 0, f"exit {process.poll()} after {took:.1f}s\n{w.log_text()}"
        assert took < 10, f"the stop took {took:.1f}s"
        print(f"\nSIGTERM -> exit with 4 deaf agents and a 30 s grace: {took:.2f} s")
        for _pid, pgid in agents:
            assert not _group_alive(pgid), f"agent group {pgid} outlived the supervisor"


def _closed_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


UNREACHABLE = {
    "mattermost": lambda url: {"mattermost": {"url": url, "token": "t0ken", "allowed_users": ["alice"]}},
    "telegram": lambda url: {"telegram": {"token": "123:t0ken", "allowed_user_ids": [1], "api_url": url}},
}


@pytest.mark.parametrize(("front", "signum"), [("mattermost", signal.SIGTERM), ("telegram", signal.SIGINT)])
async def test_a_signal_while_the_chat_server_is_still_unreachable_ends_the_start(
    tmp_path: Path, front: str, signum: signal.Signals
) -> None:
    """At boot the chat server may not answer yet, and the supervisor waits for it; a
    `systemctl stop` (SIGTERM) or ^C (SIGINT) then must not wait for the server too."""
    url = f"http://127.0.0.1:{_closed_port()}"
    config = tmp_path / "supervisor.toml"
    write_toml(config, {**UNREACHABLE[front](url), "state": {"dir": str(tmp_path / "state")}})
    log = tmp_path / "supervisor.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "supervisor", "run", "--config", str(config)],
                                   cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=stderr)
    try:
        with trio.fail_after(30):
            while "ConnectError" not in log.read_text(errors="replace"):  # it is retrying
                assert process.poll() is None, log.read_text(errors="replace")
                await trio.sleep(0.05)
        started = time.monotonic()
        process.send_signal(signum)
        with trio.move_on_after(10):
            while process.poll() is None:
                await trio.sleep(0.02)
        took = time.monotonic() - started
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0 and took < 10, f"exit {process.returncode} after {took:.1f} s:\n{log.read_text()}"
    assert "stopping" in log.read_text() and "t0ken" not in log.read_text()


async def test_a_second_supervisor_on_the_same_state_is_refused_and_the_first_serves_on(tmp_path: Path) -> None:
    """Run by hand beside the systemd service, say: two on one state would answer every
    post twice and overwrite each other's files. The hold dies with its holder, even by
    SIGKILL, so the next start is never refused by a stale one."""
    async with world(tmp_path) as w:
        first = w.spawn()
        root = await w.new_session("one")
        await w.say("hello", root)
        await w.answered(root, "echo #1: hello")
        groups = [s["pgid"] for s in w.agent_starts()]
        run = [sys.executable, "-m", "supervisor", "run", "--config", str(w.config_path)]
        second = await trio.to_thread.run_sync(functools.partial(
            subprocess.run, run, capture_output=True, text=True, timeout=30, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)}))
        assert second.returncode == 1, second.stderr
        (said,) = second.stderr.strip().splitlines()  # one sentence, no traceback
        assert f"{w.tmp / 'state'} is in use by another running supervisor (pid {first.pid})" in said
        assert groups and all(_group_alive(g) for g in groups)  # its start-up reaper ran not
        await w.say("still one of us?", root)
        await w.answered(root, "echo #2: still one of us?")  # the same agent, once
        assert first.poll() is None and len(w.agent_starts()) == 1
        # Its answer recorded as shown: a kill before that posts it again, whole (by
        # design, counted apart by the crash test), which is not what this test is about.
        await w.wait_for(lambda: nothing_to_post_again(w.tmp / "state"))
        w.kill()  # SIGKILL: no goodbye, and no stale hold either
        w.spawn()
        await w.say("and now?", root)
        await w.answered(root, "echo #3: and now?")
        assert len([p for p in w.bot_posts(root) if "echo #2: still one of us?" in p["message"]]) == 1


REFUSED_AT_START = {
    "a refused token": ({"token": "x" * 26}, "refused mattermost.token (401)"),
    "no allowed user on the server": ({"allowed_users": ["@Alcie"]}, "none of mattermost.allowed_users (alcie) is a user on"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_AT_START))
async def test_a_server_that_refuses_the_configuration_is_one_sentence_not_a_traceback(tmp_path: Path, case: str) -> None:
    """What `check` would have said, said by `run` too: the journal of a first
    `systemctl start` shows the cause, not forty lines of nurseries."""
    mattermost, sentence = REFUSED_AT_START[case]
    async with world(tmp_path) as w:
        w.configure(mattermost=mattermost)
        run = [sys.executable, "-m", "supervisor", "run", "--config", str(w.config_path)]
        result = await trio.to_thread.run_sync(functools.partial(
            subprocess.run, run, capture_output=True, text=True, timeout=30, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)}))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    said = result.stderr.strip().splitlines()[-1]
    assert sentence in said and w.server.url in said and "`supervisor check` says more" in said, said
    assert "x" * 26 not in result.stderr


async def test_no_agent_inherits_the_supervisors_own_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's systemd set-up keeps the chat token in the service's environment; an
    agent asked to run `env` would post it in the thread (and send it to its model)."""
    async with world(tmp_path) as w:
        monkeypatch.setenv("SUPERVISOR_MATTERMOST_TOKEN", w.server.bot_token)
        monkeypatch.setenv("SUPERVISOR_TELEGRAM_TOKEN", "123456:not-for-agents")
        await w.start()
        root = await w.new_session("alpha")
        await w.say("[env SUPERVISOR_MATTERMOST_TOKEN]", root_id=root)
        await w.answered(root, "env SUPERVISOR_MATTERMOST_TOKEN=(unset)")
        await w.say("[env SUPERVISOR_TELEGRAM_TOKEN]", root_id=root)
        await w.answered(root, "env SUPERVISOR_TELEGRAM_TOKEN=(unset)")
        await w.say("[env SUPERVISOR_STATE_DIR]", root_id=root)  # our mark, to find leftovers
        await w.answered(root, f"env SUPERVISOR_STATE_DIR={w.tmp / 'state'}")


async def test_started_by_nohup_the_closed_terminals_sighup_leaves_it_serving(tmp_path: Path) -> None:
    """`nohup` ignores SIGHUP so that its job outlives the terminal: the supervisor once
    listened for it anyway, and stopped when the SSH session that started it ended."""
    async with world(tmp_path) as w:
        process = w.spawn(preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
        root = await w.new_session("alpha", timeout=30)
        process.send_signal(signal.SIGHUP)
        await w.say("still there?", root_id=root)
        await w.answered(root, "echo #1: still there?")
        assert process.poll() is None and "received SIGHUP" not in w.log_text()
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            while process.poll() is None:
                await trio.sleep(0.02)
        assert process.returncode == 0


def test_under_systemd_the_journal_gets_the_web_address_without_its_token(tmp_path: Path) -> None:
    """The journal keeps stderr for whoever may read logs (the `adm` group, say): there the
    web chat's address goes without its access token, and says where the token is."""
    product = SupervisorProcess(tmp_path)
    product.stderr_path.touch()
    journal = product.stderr_path.stat()  # systemd names its stream so (`JOURNAL_STREAM`)
    env = {**product.env(), "JOURNAL_STREAM": f"{journal.st_dev}:{journal.st_ino}"}
    with product.stderr_path.open("ab") as err:
        product.process = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "run"], cwd=product.cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while "Web chat: open" not in product.stderr() and time.monotonic() < deadline:
            time.sleep(0.05)
        token_file = product.state_dir / "web-token"
        assert f"?token=<the token in {token_file}> in a browser" in product.stderr()
        assert token_file.read_text().strip() not in product.stderr()
    finally:
        assert product.stop() == 0
