"""The agent port's edges: `[agents.NAME]` in the config, `!new ... agent=NAME` and
`!agents`, the registry that picks a session's backend, and the rule that the core knows
no agent (it imports nothing from `supervisor.agent` and reads no agent's stderr)."""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

from supervisor.agent import AgentLaunch
from supervisor.agent.acp.backend import AcpAgentBackend
from supervisor.agent.claude import ClaudeBackend
from supervisor.agent.registry import AgentRegistry, runs_opencode, terminal_hint
from supervisor.config import ConfigError, config_from_dict
from supervisor.core import commands
from supervisor.core.state import SessionRecord

CORE = Path(__file__).resolve().parents[1] / "supervisor" / "core"
BASE: dict[str, Any] = {"mattermost": {"url": "http://chat.test", "token": "t", "allowed_users": ["a"]}}
OPENCODE = {"protocol": "acp", "command": ["opencode", "acp"]}


def config(**tables: Any) -> Any:
    return config_from_dict({**BASE, **tables}, {"HOME": os.environ.get("HOME", "/root")})


def test_the_core_imports_no_agent_and_reads_no_agent_words() -> None:
    for path in CORE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith(("supervisor.agent", "supervisor.chat")), path
        text = path.read_text()
        assert "No conversation found" not in text, path
        assert "addRules" not in text and "setMode" not in text, path


def test_new_takes_an_agent_and_agents_lists_them() -> None:
    assert commands.parse_main_command("!new x /tmp agent=opencode persona=p") == commands.NewSession(
        "x", "/tmp", "p", "opencode"
    )
    assert commands.parse_main_command("!new x") == commands.NewSession("x")
    assert commands.parse_main_command("!agents") == commands.ListAgents()
    bad = commands.parse_main_command("!new x agent=")
    assert isinstance(bad, commands.BadCommand) and "agent" in bad.reason


def test_named_agents_take_agent_keys_and_inherit_timeouts() -> None:
    c = config(agent={"stall_timeout_s": 7}, agents={"opencode": {**OPENCODE, "turn_timeout_s": 60}})
    registry = AgentRegistry(c)
    assert list(registry.agents) == ["claude", "opencode"]
    opencode = registry.agents["opencode"]
    assert opencode.protocol == "acp" and isinstance(opencode.backend, AcpAgentBackend)
    assert opencode.settings.stall_timeout_s == 7 and opencode.settings.turn_timeout_s == 60
    assert isinstance(registry.default.backend, ClaudeBackend)
    record = SessionRecord(id="i", name="n", channel_id="c", user_id="u", cwd="/tmp", agent="opencode")
    assert registry.backend_of(record) is opencode.backend
    assert registry.of(SessionRecord(id="i", name="n", channel_id="c", user_id="u", cwd="/tmp")) is registry.default
    assert registry.named("nope") is None
    assert registry.record_name("claude") == "" and registry.record_name("opencode") == "opencode"


def test_an_acp_default_agent() -> None:
    registry = AgentRegistry(config(agent=OPENCODE))
    assert list(registry.agents) == ["acp"] and isinstance(registry.default.backend, AcpAgentBackend)


@pytest.mark.parametrize(
    ("agents", "key"),
    [
        ({"oc": {"protocol": "smtp", "command": ["x"]}}, "agents.oc.protocol"),
        ({"oc": {"protocol": "acp"}}, "agents.oc.command"),
        ({"oc": {**OPENCODE, "colour": "red"}}, "agents.oc.colour"),
        ({"oc": {**OPENCODE, "permission_mode": "yolo"}}, "agents.oc.permission_mode"),
        ({"o c": OPENCODE}, 'agents."o c" is not a valid agent name'),
    ],
)
def test_a_bad_agents_table_names_its_key(agents: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as error:
        config(agents=agents)
    assert key in str(error.value)


def test_the_agent_protocol_is_checked() -> None:
    with pytest.raises(ConfigError) as error:
        config(agent={"protocol": "grpc"})
    assert "agent.protocol" in str(error.value)


def test_opencode_is_told_to_ask_and_kept_offline() -> None:
    registry = AgentRegistry(config(agents={"opencode": OPENCODE}))
    backend = registry.agents["opencode"].backend
    from supervisor.agent import AgentLaunch

    env = backend.env(AgentLaunch("i", "/w", False, extra_env={"OPENCODE_CONFIG_CONTENT": '{"model":"m"}'}), {})
    assert '"permission":{"*":"ask"}' in env["OPENCODE_CONFIG_CONTENT"] and '"model":"m"' in env["OPENCODE_CONFIG_CONTENT"]
    assert env["npm_config_registry"].startswith("http://127.0.0.1")
    assert backend.argv(AgentLaunch("i", "/w", False)) == ["opencode", "acp"]


def test_configured_sessions_may_name_an_agent(tmp_path: Path) -> None:
    c = config(agents={"opencode": OPENCODE}, sessions=[{"name": "s", "cwd": str(tmp_path), "agent": "opencode"}])
    assert c.sessions[0].agent == "opencode"
    with pytest.raises(ConfigError) as error:
        config(sessions=[{"name": "s", "cwd": str(tmp_path), "agent": "nope"}])
    assert "sessions[0].agent" in str(error.value)


def test_new_takes_a_conversation_to_resume() -> None:
    parsed = commands.parse_main_command("!new x agent=opencode resume=ses_abc")
    assert parsed == commands.NewSession("x", None, None, "opencode", "ses_abc")
    bad = commands.parse_main_command("!new x resume=")
    assert isinstance(bad, commands.BadCommand) and "conversation id" in bad.reason


def test_a_conversation_id_that_could_read_as_a_flag_is_refused() -> None:
    for text in (
        "!new x resume=--dangerously-skip-permissions",
        "!new x resume=-h",
        "!new x 'resume=ab cd'",
        "!new x 'resume=ab\tcd'",
        "!new x resume=ab\x1bcd",
    ):
        bad = commands.parse_main_command(text)
        assert isinstance(bad, commands.BadCommand), text
        assert "not starting with `-`, with no spaces or control characters" in bad.reason
    ok = commands.parse_main_command("!new x resume=0b0e0c5e-0000-4000-8000-000000000000")
    assert isinstance(ok, commands.NewSession) and ok.resume == "0b0e0c5e-0000-4000-8000-000000000000"


def test_claude_codes_conversation_id_is_one_word_with_its_flag() -> None:
    """`--resume=ID` / `--session-id=ID` (PROTOCOL §1): an id is never a word of its own
    that the CLI could read as a flag."""
    backend = ClaudeBackend(["claude"])
    launch = AgentLaunch(session_id="ours", cwd="/w", resume=False)
    argv = backend.argv(launch)
    assert "--session-id=ours" in argv and "--session-id" not in argv and "ours" not in argv
    argv = backend.argv(AgentLaunch(session_id="ours", cwd="/w", resume=True, agent_session_id="theirs"))
    assert "--resume=theirs" in argv and "--resume" not in argv and "theirs" not in argv


def test_opencode_is_known_however_it_is_started() -> None:
    """Unknown, OpenCode got none of its settings, and without `"permission": {"*": "ask"}`
    it runs every tool without asking."""
    started = [
        ["opencode", "acp"],
        ["/srv/node_modules/opencode-ai/bin/opencode.exe", "acp"],
        ["npx", "-y", "opencode-ai@1.18.33", "acp"],
        ["bunx", "opencode-ai", "acp"],
    ]
    for command in started:
        assert runs_opencode(command), command
    for command in (["claude-code-acp"], ["npx", "@zed-industries/claude-code-acp"], ["gemini", "--experimental-acp"]):
        assert not runs_opencode(command), command
    backend = AgentRegistry(config(agents={"oc": {"protocol": "acp", "command": started[2]}})).agents["oc"].backend
    from supervisor.agent import AgentLaunch

    assert '"permission":{"*":"ask"}' in backend.env(AgentLaunch("i", "/w", False), {})["OPENCODE_CONFIG_CONTENT"]


@pytest.mark.parametrize(
    ("command", "hint"),
    [
        (["npx", "opencode-ai", "acp"], "`opencode --session ses_1`"),
        (["/usr/local/bin/opencode", "acp"], "`opencode --session ses_1`"),
        (["claude-agent-acp"], "`claude --resume ses_1`"),
        (["npx", "@zed-industries/claude-code-acp"], "`claude --resume ses_1`"),
        (["gemini", "--experimental-acp"], "`ses_1`, with the agent's own way to resume a conversation"),
    ],
)
def test_the_terminal_hint_names_the_program_the_agent_is(command: list[str], hint: str) -> None:
    """It named the first word of the command: `npx --session ses_1`, or
    `claude-agent-acp --session ...`, commands that do not exist."""
    registry = AgentRegistry(config(agents={"a": {"protocol": "acp", "command": command}}))
    assert terminal_hint(registry.agents["a"], "ses_1") == hint
