"""`supervisor sessions`: the AGENT SESSION column and `conversation_id` in `--json` are
the agent's own conversation id, the one `claude --resume` / `opencode --session` take;
the record's `id` is ours, and is not that for an ACP session or a `resume=` session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from supervisor.core.state import SessionRecord, State, encode
from supervisor.runtime.store import write_atomically
from tests.harness import REPO, write_toml

OURS = "0f3c9a52-5d3e-4b8e-9a61-7c2f0e4d1a11"


def _record(name: str, **fields: object) -> SessionRecord:
    return SessionRecord(id=f"{OURS[:-len(name)]}{name}", name=name, channel_id="c", user_id="u", cwd="/srv",
                         root_id=name * 3, **fields)  # type: ignore[arg-type]


def _sessions(tmp_path: Path, *args: str) -> str:
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "web": {"listen": "127.0.0.1:0"},
        "state": {"dir": str(tmp_path / "state")},
        "agents.opencode": {"protocol": "acp", "command": ["opencode", "acp"]},
    })
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "sessions", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done
    return done.stdout


def test_the_agent_session_is_the_agents_conversation_id_or_none_yet(tmp_path: Path) -> None:
    records = [
        _record("acp", agent="opencode", agent_session_id="ses_3fa1", has_history=True),
        _record("acpnew", agent="opencode"),  # its session/new has not answered yet
        _record("resumed", agent_session_id="7d1e0c2a-terminal", has_history=True),  # resume=ID
        _record("claude1", has_history=True),  # Claude Code took our id as its own
        _record("claude12"),  # never prompted: no conversation to resume yet
    ]
    (tmp_path / "state").mkdir()
    write_atomically(tmp_path / "state", encode(State(sessions={r.id: r for r in records})))
    table = {line.split()[0]: line.split() for line in _sessions(tmp_path).splitlines()[1:]}
    assert table["acp"][3:5] == ["opencode", "ses_3fa1"]
    assert table["acpnew"][3:5] == ["opencode", "-"]
    assert table["resumed"][3:5] == ["claude", "7d1e0c2a-terminal"]
    assert table["claude1"][3:5] == ["claude", records[3].id]
    assert table["claude12"][3:5] == ["claude", "-"]
    rows = {row["name"]: row for row in json.loads(_sessions(tmp_path, "--json"))}
    assert {name: row["conversation_id"] for name, row in rows.items()} == {
        "acp": "ses_3fa1", "acpnew": "", "resumed": "7d1e0c2a-terminal", "claude1": records[3].id, "claude12": "",
    }
    assert rows["acp"]["id"] == records[0].id and rows["acp"]["agent_session_id"] == "ses_3fa1"  # kept as stored


def test_sessions_needs_no_token_and_a_reader_that_leaves_early_is_no_traceback(tmp_path: Path) -> None:
    """As README's systemd section has it: the token is in the service's root-only
    environment file, and a person reads the table by hand, maybe through `head`."""
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "mattermost": {"url": "https://chat.example.com", "allowed_users": ["alice"]},
        "state": {"dir": str(tmp_path / "state")},
    })
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}
    run = [sys.executable, "-m", "supervisor", "sessions", "--config", str(config)]
    done = subprocess.run(run, capture_output=True, text=True, timeout=60, env={**env, "PYTHONPATH": str(REPO)})
    assert (done.returncode, done.stdout, done.stderr) == (0, "no sessions\n", "")
    with subprocess.Popen([*run, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**env, "PYTHONPATH": str(REPO)}) as reader_gone:
        assert reader_gone.stdout is not None and reader_gone.stderr is not None
        reader_gone.stdout.close()
        stderr = reader_gone.stderr.read().decode()
        assert reader_gone.wait(timeout=60) == 1 and stderr == ""


def test_a_token_file_every_user_can_read_is_warned_of_and_still_taken(tmp_path: Path) -> None:
    """Anyone with a shell on the machine could act as the bot: said at every command.
    Not refused: a service that ran yesterday must not stay down after an upgrade."""
    token = tmp_path / "token"
    token.write_text("s3cr3t\n")
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "mattermost": {"url": "https://chat.example.com", "allowed_users": ["alice"], "token_file": str(token)},
        "state": {"dir": str(tmp_path / "state")},
    })
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "supervisor", "sessions", "--config", str(config)]
    for mode, warned in ((0o644, True), (0o600, False)):
        token.chmod(mode)
        done = subprocess.run(run, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0 and done.stdout == "no sessions\n"
        assert (f"{token} can be read by every user of this machine" in done.stderr) is warned, done.stderr
        assert "s3cr3t" not in done.stderr


def test_a_config_file_holding_the_token_that_every_user_can_read_is_warned_of(tmp_path: Path) -> None:
    """`token = "..."` written in the file is as exposed as a token file would be; the
    variable's token is not in the file, and is not warned of."""
    config = tmp_path / "supervisor.toml"
    write_toml(config, {
        "mattermost": {"url": "https://chat.example.com", "allowed_users": ["alice"], "token": "s3cr3t"},
        "state": {"dir": str(tmp_path / "state")},
    })  # fmt: skip
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("SUPERVISOR_")}, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "supervisor", "sessions", "--config", str(config)]
    for mode, variable, warned in ((0o644, "", True), (0o600, "", False), (0o644, "v4r14bl3", False)):
        config.chmod(mode)
        done = subprocess.run(run, capture_output=True, text=True, timeout=60,
                              env={**env, "SUPERVISOR_MATTERMOST_TOKEN": variable})  # fmt: skip
        assert done.returncode == 0 and done.stdout == "no sessions\n"
        assert (f"{config} can be read by every user of this machine" in done.stderr) is warned, done.stderr
        assert "s3cr3t" not in done.stderr and "v4r14bl3" not in done.stderr


def test_sessions_with_its_output_closed_is_no_traceback(tmp_path: Path) -> None:
    """A script or a cron line may start it with stdout closed (`>&-`): Python then has no
    `sys.stdout` at all, and what the table would print goes nowhere."""
    config = tmp_path / "supervisor.toml"
    write_toml(config, {"web": {"listen": "127.0.0.1:0"}, "state": {"dir": str(tmp_path / "state")}})
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "sessions", "--config", str(config)],
        capture_output=False, stderr=subprocess.PIPE, text=True, timeout=60, preexec_fn=lambda: os.close(1),
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (done.returncode, done.stderr) == (0, "")
