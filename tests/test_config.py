"""The configuration contract of PRODUCT.md: what loads, and the one sentence for what does not."""

from __future__ import annotations

import copy
import datetime as dt
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.config import (
    AgentConfig,
    Config,
    ConfigError,
    FilesConfig,
    MattermostConfig,
    Persona,
    RenderConfig,
    SessionSpec,
    StateConfig,
    config_from_dict,
    find_config_path,
    load_config,
)

# PRODUCT.md's example, verbatim: it must load once $HOME holds ~/homelab and the token.
PRODUCT_EXAMPLE = """\
[mattermost]
url = "https://chat.example.com"       # env SUPERVISOR_MATTERMOST_URL
token_file = "~/.config/supervisor/token"  # or token = "..."; env SUPERVISOR_MATTERMOST_TOKEN
allowed_users = ["alice", "bob"]       # usernames allowed to drive sessions; required, non-empty

[agent]
command = ["claude"]                   # argv prefix; the supervisor appends the protocol flags
args = []                              # extra arguments for every session
env = {}                               # extra environment for every session
permission_mode = "default"            # passed to the agent; "default" asks in the thread
default_cwd = "~"                      # working directory of sessions created without one
turn_timeout_s = 1800                  # a turn running longer is interrupted, and the thread told
approval_timeout_s = 600               # an unanswered permission request is denied after this
idle_suspend_s = 0                     # >0: stop an idle agent process, resume it on the next message
stall_timeout_s = 300                  # a turn with no output for this long is treated as hung
notify_after_s = 60                    # a turn longer than this ends with a mention of the user

[render]
edit_interval_ms = 700                 # at most one edit per post per interval while streaming
show_thinking = true                   # thinking blocks shown collapsed, or not at all

[files]
max_upload_mb = 50                     # attachments larger than this are refused, and the thread told
max_image_mb = 5                       # images up to this size also go to the agent as image content
max_get_mb = 50                        # `!get PATH` refuses larger files

[state]
dir = "~/.local/state/supervisor"      # the mapping file and the supervisor's own state live here

[[sessions]]                           # optional: sessions that exist from the first start on,
name = "homelab"                       #   each with its own thread (reused, not recreated, on restart)
cwd = "~/homelab"
persona = "reviewer"

[personas.reviewer]                    # optional: named presets chosen with !new ... persona=NAME
append_system_prompt = "You review code; you do not edit files."
model = ""                             # optional
"""

TOKEN = "s3cr3t-token-value"


def write_private(path: Path, text: str) -> None:
    """A token file as the README asks for it: readable by its owner only."""
    path.write_text(text)
    path.chmod(0o600)


def make_home(root: Path) -> Path:
    """A home directory shaped like the example expects."""
    home = root / "home"
    (home / "homelab").mkdir(parents=True)
    (home / ".config" / "supervisor").mkdir(parents=True)
    write_private(home / ".config" / "supervisor" / "token", f"  {TOKEN}\n")
    return home


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return make_home(tmp_path)


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return {"HOME": str(home)}


def minimal(home: Path) -> dict[str, Any]:
    return {
        "mattermost": {
            "url": "https://chat.example.com",
            "token_file": "~/.config/supervisor/token",
            "allowed_users": ["alice"],
        },
        "sessions": [{"name": "homelab", "cwd": "~/homelab", "persona": "reviewer"}],
        "personas": {"reviewer": {"model": "opus"}},
    }


def assert_one_sentence(error: ConfigError, key: str) -> None:
    assert error.key == key
    assert key in str(error)
    assert "\n" not in str(error)
    assert str(error) == error.message
    assert "is invalid (" not in str(error)  # the fallback for problems we did not foresee


def test_product_example_loads(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    path = tmp_path / "supervisor.toml"
    path.write_text(PRODUCT_EXAMPLE)

    config = load_config(path, env)

    assert config.mattermost == MattermostConfig(
        url="https://chat.example.com",
        allowed_users=("alice", "bob"),
        token_file=home / ".config" / "supervisor" / "token",
        token=TOKEN,
    )
    assert config.agent == AgentConfig(default_cwd=home)
    assert config.render == RenderConfig(edit_interval_ms=700, show_thinking=True)
    assert config.files == FilesConfig(max_upload_mb=50, max_image_mb=5, max_get_mb=50)
    assert config.state == StateConfig(dir=home / ".local" / "state" / "supervisor")
    assert config.sessions == (SessionSpec("homelab", home / "homelab", "reviewer"),)
    assert dict(config.personas) == {
        "reviewer": Persona("You review code; you do not edit files.", model="")
    }
    assert not config.state.dir.exists()  # loading creates nothing


def test_defaults_of_every_optional_key(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    del data["sessions"], data["personas"]

    config = config_from_dict(data, env)

    assert config.mattermost.requests_per_second is None  # no cap: follow the server
    assert config.mattermost.team == ""
    assert config.agent.command == ("claude",)
    assert config.agent.permission_mode == "default"
    assert config.agent.default_cwd == home
    assert (config.agent.turn_timeout_s, config.agent.approval_timeout_s) == (1800, 600)
    assert (config.agent.idle_suspend_s, config.agent.stall_timeout_s) == (0, 300)
    assert config.agent.notify_after_s == 60
    assert config.agent.shutdown_grace_s == 3.0
    assert (config.agent.restart_max, config.agent.restart_window_s) == (3, 300)
    assert config.render == RenderConfig(700, True)
    assert config.files == FilesConfig(50, 5, 50)
    assert config.state.dir == home / ".local" / "state" / "supervisor"
    assert config.sessions == ()
    assert dict(config.personas) == {}


def test_extra_keys_load(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["mattermost"] |= {"requests_per_second": 2.5, "team": "ops"}
    data["agent"] = {"shutdown_grace_s": 1, "restart_max": 0, "restart_window_s": 60}
    data["render"] = {"show_thinking": False, "edit_interval_ms": 0}

    config = config_from_dict(data, env)

    assert config.mattermost.requests_per_second == 2.5
    assert config.mattermost.team == "ops"
    assert config.agent.shutdown_grace_s == 1.0
    assert isinstance(config.agent.shutdown_grace_s, float)
    assert (config.agent.restart_max, config.agent.restart_window_s) == (0, 60)
    assert config.render == RenderConfig(edit_interval_ms=0, show_thinking=False)


def test_values_are_normalised(tmp_path: Path, home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["mattermost"] |= {"url": "http://chat:8065/mm/", "allowed_users": ["@Alice", " bob"]}
    data["agent"] = {"env": {"A": "1"}, "args": ["--verbose"], "default_cwd": "rel"}
    data["sessions"] = [{"name": "x"}]
    (tmp_path / "rel").mkdir()

    config = config_from_dict(data, env, base_dir=tmp_path)

    assert config.mattermost.url == "http://chat:8065/mm"
    assert config.mattermost.allowed_users == ("alice", "bob")
    assert dict(config.agent.env) == {"A": "1"}
    assert config.agent.args == ("--verbose",)
    assert config.agent.default_cwd == tmp_path / "rel"  # relative to the config's directory
    assert config.sessions[0].cwd == tmp_path / "rel"  # a session without cwd gets the default
    hash(config)  # frozen all the way down, mappings included


def test_input_is_not_modified(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    del data["sessions"][0]["cwd"]
    before = copy.deepcopy(data)
    env["SUPERVISOR_MATTERMOST_TOKEN"] = "t"

    config_from_dict(data, env)

    assert data == before


def test_classes_built_by_hand_obey_the_same_rules(home: Path) -> None:
    with pytest.raises(ValueError, match="at least one username"):
        MattermostConfig(url="https://x", allowed_users=())
    with pytest.raises(ValueError, match="turn_timeout_s must be 0 or more"):
        AgentConfig(default_cwd=home, turn_timeout_s=-1)
    with pytest.raises(ValueError, match=r"sessions\[0\]\.persona"):
        Config(
            mattermost=MattermostConfig(url="https://x", allowed_users=("a",)),
            sessions=(SessionSpec("s", home, persona="ghost"),),
        )


def test_token_never_in_repr(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["agent"] = {"env": {"ANTHROPIC_API_KEY": "sk-very-secret"}}

    config = config_from_dict(data, env)

    assert config.mattermost.token == TOKEN
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    assert "sk-very-secret" not in repr(config)
    assert "ANTHROPIC_API_KEY" in repr(config)


def test_token_of_wrong_type_is_not_echoed(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    del data["mattermost"]["token_file"]
    data["mattermost"]["token"] = 918273645

    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)

    assert_one_sentence(caught.value, "mattermost.token")
    assert "918273645" not in str(caught.value)


def test_env_overrides_url_and_token(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["mattermost"]["token_file"] = "/no/such/token"  # displaced: never read
    env |= {
        "SUPERVISOR_MATTERMOST_URL": "https://other.example",
        "SUPERVISOR_MATTERMOST_TOKEN": "e",
    }

    config = config_from_dict(data, env)

    assert config.mattermost.url == "https://other.example"
    assert config.mattermost.token == "e"


def test_env_token_beats_token_in_file(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    del data["mattermost"]["token_file"]
    data["mattermost"]["token"] = "from-file"

    assert config_from_dict(data, env).mattermost.token == "from-file"
    env["SUPERVISOR_MATTERMOST_TOKEN"] = "from-env"
    assert config_from_dict(data, env).mattermost.token == "from-env"


def test_env_supplies_what_the_file_lacks(home: Path, env: dict[str, str]) -> None:
    env |= {"SUPERVISOR_MATTERMOST_URL": "https://c.example", "SUPERVISOR_MATTERMOST_TOKEN": "t"}

    config = config_from_dict({"mattermost": {"allowed_users": ["alice"]}}, env)

    assert (config.mattermost.url, config.mattermost.token) == ("https://c.example", "t")


def test_empty_env_variable_counts_as_unset(home: Path, env: dict[str, str]) -> None:
    env |= {"SUPERVISOR_MATTERMOST_URL": "", "SUPERVISOR_MATTERMOST_TOKEN": ""}

    config = config_from_dict(minimal(home), env)

    assert (config.mattermost.url, config.mattermost.token) == ("https://chat.example.com", TOKEN)


def test_bad_env_value_names_the_variable(home: Path, env: dict[str, str]) -> None:
    env["SUPERVISOR_MATTERMOST_URL"] = "chat.example.com"

    with pytest.raises(ConfigError) as caught:
        config_from_dict(minimal(home), env)

    assert_one_sentence(caught.value, "mattermost.url")
    assert "SUPERVISOR_MATTERMOST_URL" in str(caught.value)


def test_tilde_follows_home(tmp_path: Path, home: Path) -> None:
    other = make_home(tmp_path / "other")
    write_private(other / ".config" / "supervisor" / "token", "other-token")

    config = config_from_dict(minimal(home), {"HOME": str(other)})

    assert config.mattermost.token == "other-token"
    assert config.sessions[0].cwd == other / "homelab"


# --- every way the configuration can be unusable: one sentence naming the key --------

Mutation = Callable[[dict[str, Any], Path], None]


def _set(section: str, key: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any], home: Path) -> None:
        data.setdefault(section, {})[key] = value

    return mutate


def _drop(section: str, key: str) -> Mutation:
    def mutate(data: dict[str, Any], home: Path) -> None:
        del data[section][key]

    return mutate


def _session(**entry: Any) -> Mutation:
    def mutate(data: dict[str, Any], home: Path) -> None:
        data["sessions"].append(entry)

    return mutate


def _file_as(section: str, key: str) -> Mutation:
    """Point a directory key at a regular file."""

    def mutate(data: dict[str, Any], home: Path) -> None:
        data.setdefault(section, {})[key] = str(home / ".config" / "supervisor" / "token")

    return mutate


def _no_token(data: dict[str, Any], home: Path) -> None:
    del data["mattermost"]["token_file"]


def _empty_token_file(data: dict[str, Any], home: Path) -> None:
    write_private(home / "empty", "\n")
    data["mattermost"]["token_file"] = "~/empty"


def _token_file_with_space(data: dict[str, Any], home: Path) -> None:
    write_private(home / "spaced", "a b\n")
    data["mattermost"]["token_file"] = "~/spaced"


def _agent(**keys: Any) -> Mutation:
    """An `[agents.oc]` with these keys."""
    return _set("agents", "oc", {"protocol": "acp", "command": ["opencode", "acp"], **keys})


def _session_file_cwd(data: dict[str, Any], home: Path) -> None:
    data["sessions"][0]["cwd"] = "~/.config/supervisor/token"


ERROR_CASES: list[tuple[str, Mutation, str, str]] = [
    # (id, mutation, key, words the sentence must hold)
    ("unknown-top-level", _set("mattermot", "x", 1), "mattermot", "did you mean mattermost?"),
    ("unknown-in-section", _set("agent", "comand", ["x"]), "agent.comand", "did you mean agent.command?"),
    ("unknown-in-session", _session(name="x", nmae="y"), "sessions[1].nmae", "unknown key"),
    ("unknown-in-persona", _set("personas", "p", {"modle": ""}), "personas.p.modle", "did you mean personas.p.model?"),
    ("int-not-string", _set("agent", "turn_timeout_s", "abc"), "agent.turn_timeout_s", 'must be an integer, not "abc"'),
    ("int-not-bool", _set("files", "max_upload_mb", True), "files.max_upload_mb", "must be an integer, not true"),
    ("int-not-float", _set("render", "edit_interval_ms", 1.5), "render.edit_interval_ms", "must be an integer"),
    ("bool-not-string", _set("render", "show_thinking", "yes"), "render.show_thinking", "must be true or false"),
    ("float-not-string", _set("mattermost", "requests_per_second", "10"), "mattermost.requests_per_second", "must be a number"),
    ("list-not-string", _set("mattermost", "allowed_users", "alice"), "mattermost.allowed_users", "must be an array"),
    ("list-item-type", _set("agent", "command", ["claude", 3]), "agent.command[1]", "must be a string"),
    ("args-item-type", _set("agent", "args", [None]), "agent.args[0]", "must be a string"),
    ("env-value-type", _set("agent", "env", {"A": 1}), "agent.env.A", "must be a string"),
    ("env-not-table", _set("agent", "env", ["A=1"]), "agent.env", "must be a table"),
    ("env-bad-name", _set("agent", "env", {"A=B": "1"}), 'agent.env."A=B"', "environment variable"),
    ("section-not-table", lambda d, h: d.update(render=3), "render", "must be a table"),
    ("sessions-not-array", lambda d, h: d.update(sessions={"a": {}}), "sessions", "must be an array"),
    ("empty-allowed-users", _set("mattermost", "allowed_users", []), "mattermost.allowed_users", "at least one username"),
    ("blank-allowed-user", _set("mattermost", "allowed_users", ["a", "@"]), "mattermost.allowed_users[1]", "must not be empty"),
    ("empty-command", _set("agent", "command", []), "agent.command", "must name the program"),
    ("bad-permission-mode", _set("agent", "permission_mode", "yolo"), "agent.permission_mode", "acceptEdits"),
    ("missing-token", _no_token, "mattermost.token", "SUPERVISOR_MATTERMOST_TOKEN"),
    ("unreadable-token-file", _set("mattermost", "token_file", "/no/such/token"), "mattermost.token_file", "cannot be read"),
    ("token-file-is-dir", _set("mattermost", "token_file", "~"), "mattermost.token_file", "is not a regular file"),
    ("empty-token-file", _empty_token_file, "mattermost.token_file", "is empty"),
    ("token-and-token-file", _set("mattermost", "token", "x"), "mattermost.token", "keep only one"),
    ("token-with-space", lambda d, h: d["mattermost"].update(token="a b", token_file=""), "mattermost.token", "whitespace"),
    ("token-file-with-space", _token_file_with_space, "mattermost.token_file", '" holds a token that must not contain whitespace'),
    ("missing-url", _drop("mattermost", "url"), "mattermost.url", "is required"),
    ("missing-mattermost", lambda d, h: d.pop("mattermost"), "mattermost", "no front end"),
    ("url-no-scheme", _set("mattermost", "url", "chat.example.com"), "mattermost.url", "http(s)://host"),
    ("url-wrong-scheme", _set("mattermost", "url", "ftp://chat.example.com"), "mattermost.url", "http(s)://host"),
    ("url-no-host", _set("mattermost", "url", "https://"), "mattermost.url", '"https://"'),
    ("url-bad-port", _set("mattermost", "url", "https://chat:http"), "mattermost.url", "http(s)://host"),
    ("url-of-the-api", _set("mattermost", "url", "https://chat.example.com/api/v4"), "mattermost.url", "without /api/v4"),
    ("url-of-the-api-slash", _set("mattermost", "url", "https://chat.example.com/mm/api/v4/"), "mattermost.url", "without /api/v4"),
    ("session-cwd-missing", _session(name="x", cwd="/no/such/dir"), "sessions[1].cwd", "does not exist"),
    ("session-cwd-is-file", _session_file_cwd, "sessions[0].cwd", "is not a directory"),
    ("default-cwd-missing", _set("agent", "default_cwd", "~/nope"), "agent.default_cwd", "does not exist"),
    ("default-cwd-is-file", _file_as("agent", "default_cwd"), "agent.default_cwd", "is not a directory"),
    ("default-cwd-empty", _set("agent", "default_cwd", ""), "agent.default_cwd", "must not be empty"),
    ("state-dir-is-file", _file_as("state", "dir"), "state.dir", "is not a directory"),
    ("state-dir-under-file", _set("state", "dir", "~/.config/supervisor/token/state"), "state.dir", "a part of it is a file"),
    ("session-cwd-under-file", _session(name="x", cwd="~/.config/supervisor/token/x"), "sessions[1].cwd", "a part of it is a file"),
    ("session-name-space", _session(name="bad name"), "sessions[1].name", "is not a valid name"),
    ("session-name-empty", _session(name=""), "sessions[1].name", "is not a valid name"),
    ("session-name-long", _session(name="x" * 65), "sessions[1].name", "is not a valid name"),
    ("session-name-missing", _session(cwd="~"), "sessions[1].name", "is required"),
    ("session-not-table", lambda d, h: d["sessions"].append(3), "sessions[1]", "must be a table"),
    ("duplicate-session", _session(name="homelab"), "sessions[1].name", "already used by sessions[0]"),
    ("undefined-persona", _session(name="x", persona="ghost"), "sessions[1].persona", "not defined"),
    ("persona-not-table", _set("personas", "p", "x"), "personas.p", "must be a table"),
    ("persona-bad-name", _set("personas", "a b", {}), 'personas."a b"', "not a valid persona name"),
    ("persona-field-type", _set("personas", "p", {"model": 4}), "personas.p.model", "must be a string"),
    ("persona-unknown-agent", _set("personas", "p", {"agent": "ghost"}), "personas.p.agent", "not defined in [agents]"),
    ("nul-in-string", _set("agent", "args", ["a\0b"]), "agent.args[0]", "NUL"),
    ("requests-per-second-zero", _set("mattermost", "requests_per_second", 0), "mattermost.requests_per_second", "more than 0"),
    ("requests-per-second-inf", _set("mattermost", "requests_per_second", float("inf")), "mattermost.requests_per_second", "finite"),
    ("grace-zero", _set("agent", "shutdown_grace_s", 0), "agent.shutdown_grace_s", "more than 0"),
    ("restart-window-zero", _set("agent", "restart_window_s", 0), "agent.restart_window_s", "more than 0"),
    ("restart-max-negative", _set("agent", "restart_max", -1), "agent.restart_max", "0 or more"),
    ("edit-interval-negative", _set("render", "edit_interval_ms", -1), "render.edit_interval_ms", "0 or more"),
    ("upload-limit-negative", _set("files", "max_upload_mb", -1), "files.max_upload_mb", "0 or more"),
    ("newline-in-unknown-key", _set("agent", "a\nb", 1), 'agent."a\\nb"', "unknown key"),
    # [agents.NAME] keys obey [agent]'s types and ranges: a value [agent] refuses is not
    # taken here to fail (with a traceback) when the agent is set up, or to be truncated.
    ("agents-grace-zero", _agent(shutdown_grace_s=0), "agents.oc.shutdown_grace_s", "more than 0"),
    ("agents-window-zero", _agent(restart_window_s=0), "agents.oc.restart_window_s", "more than 0"),
    ("agents-timeout-negative", _agent(turn_timeout_s=-3), "agents.oc.turn_timeout_s", "must be 0 or more, not -3"),
    ("agents-timeout-fraction", _agent(idle_suspend_s=0.5), "agents.oc.idle_suspend_s", "must be an integer, not 0.5"),
    ("agents-restarts-fraction", _agent(restart_max=2.5), "agents.oc.restart_max", "must be an integer"),
    ("agents-bad-permission-mode", _agent(permission_mode="yolo"), "agents.oc.permission_mode", "acceptEdits"),
]  # fmt: skip

TIMEOUTS = [
    "turn_timeout_s",
    "approval_timeout_s",
    "idle_suspend_s",
    "stall_timeout_s",
    "notify_after_s",
]
ERROR_CASES += [
    (f"negative-{key}", _set("agent", key, -5), f"agent.{key}", "must be 0 or more, not -5")
    for key in TIMEOUTS
]


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [pytest.param(m, k, w, id=i) for i, m, k, w in ERROR_CASES],
)
def test_unusable_value_is_one_sentence_naming_the_key(
    home: Path, env: dict[str, str], mutate: Mutation, key: str, words: str
) -> None:
    data = minimal(home)
    mutate(data, home)

    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)

    assert_one_sentence(caught.value, key)
    assert words in str(caught.value)


def test_sessions_and_personas_may_name_the_default_agent_by_its_name(home: Path, env: dict[str, str]) -> None:
    """With an `[agents.claude]`, `[agent]` is called "default": `!new ... agent=default`
    picks it, and so may a `[[sessions]]` entry or a persona. Without one it is "claude"."""
    from supervisor.agent.registry import AgentRegistry

    data = minimal(home)
    data["agents"] = {"claude": {"command": ["claude-next"]}}
    data["sessions"][0]["agent"] = "default"
    data["personas"]["reviewer"]["agent"] = "default"
    config = config_from_dict(data, env)
    registry = AgentRegistry(config)
    assert registry.named(config.sessions[0].agent) is registry.default
    del data["agents"]
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, "sessions[0].agent")
    data["sessions"][0]["agent"] = data["personas"]["reviewer"]["agent"] = "claude"
    assert config_from_dict(data, env).sessions[0].agent == "claude"


def test_misspelt_key_is_named_before_the_missing_one(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["mattermost"]["ulr"] = data["mattermost"].pop("url")

    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)

    assert str(caught.value) == "unknown key mattermost.ulr (did you mean mattermost.url?)"


def test_toml_syntax_error_names_file_and_line(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "supervisor.toml"
    path.write_text('[mattermost]\nurl = "https://x"\nallowed_users = [alice]\n')

    with pytest.raises(ConfigError) as caught:
        load_config(path, env)

    assert_one_sentence(caught.value, f"{path} line 3")
    assert "not valid TOML" in str(caught.value)


def test_missing_config_file_names_the_path(tmp_path: Path, env: dict[str, str]) -> None:
    path = tmp_path / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load_config(path, env)

    assert_one_sentence(caught.value, str(path))
    assert "does not exist" in str(caught.value)


def test_config_file_that_is_a_directory(tmp_path: Path, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path, env)

    assert_one_sentence(caught.value, str(tmp_path))
    assert "cannot be read" in str(caught.value)


def test_config_file_paths_are_relative_to_it(tmp_path: Path, home: Path) -> None:
    (tmp_path / "conf" / "work").mkdir(parents=True)
    write_private(tmp_path / "conf" / "token", TOKEN)
    path = tmp_path / "conf" / "supervisor.toml"
    path.write_text(
        '[mattermost]\nurl = "https://x"\ntoken_file = "token"\nallowed_users = ["a"]\n'
        '[agent]\ndefault_cwd = "work"\n[state]\ndir = "state"\n'
    )

    config = load_config(path, {"HOME": str(home)})

    assert config.mattermost.token == TOKEN
    assert config.agent.default_cwd == tmp_path / "conf" / "work"
    assert config.state.dir == tmp_path / "conf" / "state"


# --- where the file is looked for -----------------------------------------------------


@pytest.fixture
def places(tmp_path: Path) -> tuple[Path, Path]:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    (home / ".config" / "supervisor").mkdir(parents=True)
    cwd.mkdir()
    return cwd, home


def test_discovery_order(tmp_path: Path, places: tuple[Path, Path]) -> None:
    cwd, home = places
    in_home = home / ".config" / "supervisor" / "supervisor.toml"
    in_cwd = cwd / "supervisor.toml"
    from_env = tmp_path / "env.toml"
    explicit = tmp_path / "explicit.toml"
    env = {"SUPERVISOR_CONFIG": str(from_env)}
    for path in (in_home, in_cwd, from_env, explicit):
        path.write_text("")

    assert find_config_path(str(explicit), env, cwd, home) == explicit
    assert find_config_path(None, env, cwd, home) == from_env
    assert find_config_path(None, {}, cwd, home) == in_cwd
    in_cwd.unlink()
    assert find_config_path(None, {}, cwd, home) == in_home
    assert find_config_path("explicit.toml", {}, tmp_path, home) == explicit
    assert find_config_path("~/.config/supervisor/supervisor.toml", {}, cwd, home) == in_home


@pytest.mark.parametrize(
    ("explicit", "env", "key"),
    [
        ("missing.toml", {}, "--config"),
        (None, {"SUPERVISOR_CONFIG": "missing.toml"}, "SUPERVISOR_CONFIG"),
    ],
)
def test_named_config_file_must_exist(
    places: tuple[Path, Path], explicit: str | None, env: dict[str, str], key: str
) -> None:
    cwd, home = places
    (cwd / "supervisor.toml").write_text("")  # no falling through to this one

    with pytest.raises(ConfigError) as caught:
        find_config_path(explicit, env, cwd, home)

    assert_one_sentence(caught.value, key)
    assert str(cwd / "missing.toml") in str(caught.value)


def test_no_config_file_anywhere(places: tuple[Path, Path]) -> None:
    cwd, home = places

    with pytest.raises(ConfigError) as caught:
        find_config_path(None, {}, cwd, home)

    assert_one_sentence(caught.value, "--config")
    assert str(cwd / "supervisor.toml") in str(caught.value)
    assert str(home / ".config" / "supervisor" / "supervisor.toml") in str(caught.value)


# --- junk never escapes as anything but ConfigError -----------------------------------

toml_scalars = st.one_of(
    st.integers(),
    st.booleans(),
    st.floats(),
    st.text(max_size=40),
    st.sampled_from(["", "~", "/", ".", "~/homelab", "http://x", "claude", "default"]),
    st.datetimes(),
    st.dates(),
    st.times(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _known_keys() -> list[tuple[str, ...]]:
    sections = {
        "mattermost": MattermostConfig,
        "agent": AgentConfig,
        "render": RenderConfig,
        "files": FilesConfig,
        "state": StateConfig,
    }
    keys: list[tuple[str, ...]] = [
        (name, field.name) for name, cls in sections.items() for field in attrs.fields(cls)
    ]
    keys += [("sessions", "0", field.name) for field in attrs.fields(SessionSpec)]
    keys += [("personas", "reviewer", field.name) for field in attrs.fields(Persona)]
    keys += [(name,) for name in [field.name for field in attrs.fields(Config)]]
    keys += [("agent", "env", "X"), ("agent", "bogus"), ("personas", "other"), ("bogus",)]
    return keys


@pytest.fixture(scope="module")
def junk_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_home(tmp_path_factory.mktemp("junk"))


def _put(data: dict[str, Any], key: tuple[str, ...], value: Any) -> None:
    target: Any = data
    for part in key[:-1]:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    target[key[-1]] = value


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(_known_keys()), value=toml_values)
def test_junk_value_loads_or_is_a_config_error(
    junk_home: Path, key: tuple[str, ...], value: Any
) -> None:
    data = copy.deepcopy(minimal(junk_home))
    _put(data, key, value)

    try:
        config = config_from_dict(data, {"HOME": str(junk_home)}, base_dir=junk_home)
    except ConfigError as error:
        assert error.key
        assert "\n" not in str(error)
        assert "is invalid (" not in str(error)
    else:
        assert isinstance(config, Config)
        hash(config)


def test_junk_strategy_reaches_both_outcomes(junk_home: Path) -> None:
    """Guard for the property above: junk can load and can fail."""
    data = minimal(junk_home)
    env = {"HOME": str(junk_home)}
    _put(data, ("agent", "default_cwd"), "/")
    assert config_from_dict(data, env).agent.default_cwd == Path("/")
    _put(data, ("agent", "default_cwd"), dt.date(2020, 1, 1))
    with pytest.raises(ConfigError, match="must be a string, not a date"):
        config_from_dict(data, env)


@pytest.mark.parametrize(
    ("where", "key"),
    [("persona", "personas.reviewer.model"), ("session", "sessions[0].persona"), ("default", "sessions[0].persona")],
)
def test_a_persona_an_acp_agent_would_not_hear_is_refused(home: Path, env: dict[str, str], where: str, key: str) -> None:
    """An ACP agent takes no system prompt or model from us: a persona's were dropped
    without a word (a "reviewer" told not to edit files edited them)."""
    data = minimal(home)
    data["agents"] = {"opencode": {"command": ["opencode", "acp"], "protocol": "acp"}}
    if where == "persona":
        data["personas"]["reviewer"]["agent"] = "opencode"
    elif where == "session":
        data["sessions"][0]["agent"] = "opencode"
    else:  # the default agent speaks ACP
        data["agent"] = {"command": ["opencode", "acp"], "protocol": "acp"}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, key)
    assert "an ACP agent takes no system prompt or model" in str(caught.value)
    del data["personas"]["reviewer"]["model"]  # a persona that names only its agent is fine
    config_from_dict(data, env)


def test_the_desk_knows_which_agents_a_persona_cannot_reach(home: Path, env: dict[str, str]) -> None:
    from supervisor.agent.config import PERSONA_REFUSED
    from supervisor.agent.registry import AgentRegistry

    data = minimal(home)
    data["agents"] = {"opencode": {"command": ["opencode", "acp"], "protocol": "acp"}}
    data["personas"]["plain"] = {}
    config = config_from_dict(data, env)
    assert AgentRegistry(config).personas_not_taken(config.personas) == {
        "reviewer": (("opencode",), PERSONA_REFUSED), "plain": ((), PERSONA_REFUSED)
    }


# --- values that passed the checks and failed later (a hang, a crash at start) ------

TELEGRAM_TOKEN = "123456789:AAEexampleexampleexampleexampleexa"


def test_a_token_file_that_would_block_is_refused_without_waiting(tmp_path: Path, env: dict[str, str]) -> None:
    """A FIFO (or a terminal) waits for a writer: a start would hang with the stop signals
    held, beyond SIGTERM and Ctrl-C. Loaded in a thread, so that a regression fails here
    instead of hanging the tests."""
    fifo = tmp_path / "token"
    os.mkfifo(fifo)
    data: dict[str, Any] = {"telegram": {"token_file": str(fifo), "allowed_user_ids": [1]}}
    caught: list[BaseException] = []

    def load() -> None:
        try:
            config_from_dict(data, env)
        except BaseException as exc:  # handed to the test's thread
            caught.append(exc)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    loader.join(10)
    if loader.is_alive():  # let the blocked read end (it sees the end of the file)
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        loader.join(10)
        pytest.fail("reading the token file waited for a writer")
    assert len(caught) == 1 and isinstance(caught[0], ConfigError), caught
    assert_one_sentence(caught[0], "telegram.token_file")
    assert str(caught[0]).startswith('telegram.token_file "/') and str(caught[0]).endswith('" is not a regular file')


def test_a_token_file_that_is_a_regular_file_still_loads(tmp_path: Path, env: dict[str, str]) -> None:
    token = tmp_path / "token"
    token.write_text(f"{TELEGRAM_TOKEN}\n")
    data = {"telegram": {"token_file": str(token), "allowed_user_ids": [1]}}
    telegram = config_from_dict(data, env).telegram
    assert telegram is not None and telegram.token == TELEGRAM_TOKEN


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**63, -(2**63)], ids=["huge", "-huge", "2**63", "-2**63"])
def test_an_integer_beyond_64_bits_is_refused_naming_its_key(home: Path, env: dict[str, str], value: int) -> None:
    """It would crash `run` later (OverflowError turning it into seconds)."""
    data = minimal(home)
    data["render"] = {"edit_interval_ms": value}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, "render.edit_interval_ms")
    assert str(caught.value) == (
        "render.edit_interval_ms must be between -9223372036854775807 and 9223372036854775807"
    )


def test_the_largest_64_bit_integer_loads(home: Path, env: dict[str, str]) -> None:
    data = minimal(home)
    data["agent"] = {"turn_timeout_s": 2**63 - 1}
    assert config_from_dict(data, env).agent.turn_timeout_s == 2**63 - 1


def test_an_integer_too_long_for_python_to_read_is_one_sentence(tmp_path: Path, env: dict[str, str]) -> None:
    """tomllib raises a plain ValueError (not TOMLDecodeError) past 4300 digits."""
    path = tmp_path / "supervisor.toml"
    path.write_text("[web]\n[agent]\nturn_timeout_s = " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env)
    assert caught.value.key == str(path) and "\n" not in str(caught.value)
    assert str(caught.value) == (
        f"{path} is not valid TOML: Exceeds the limit (4300 digits) for integer string conversion"
    )


@pytest.mark.parametrize("protocol", ["claude", "acp"])
def test_agents_default_beside_agents_named_as_the_default_protocol_is_refused(
    home: Path, env: dict[str, str], protocol: str
) -> None:
    """With `[agents.<protocol of [agent]>]`, `[agent]` is called "default": an
    `[agents.default]` as well would hide it from every `agent=` and take its "(default)"."""
    data = minimal(home)
    del data["personas"]["reviewer"]["model"]  # (a model reaches no ACP [agent])
    data["agent"] = {"protocol": protocol, "command": ["claude"]}
    data["agents"] = {protocol: {"command": ["x"]}, "default": {"protocol": "acp", "command": ["opencode", "acp"]}}
    with pytest.raises(ConfigError) as caught:
        config_from_dict(data, env)
    assert_one_sentence(caught.value, "agents.default")
    assert str(caught.value) == (
        f'agents.default cannot be used beside [agents.{protocol}]: [agent] is then called "default"; '
        "rename one of them"
    )
    del data["agents"][protocol]  # alone, an [agents.default] is an agent like any other
    assert config_from_dict(data, env).default_agent_name == protocol
