"""The supervisor's configuration: one TOML file plus a few environment overrides.

This module owns turning that file into frozen `Config` objects and every rule a value
must obey. A configuration that loads is usable as it stands: types are right, numbers are
in range, each `cwd` is an existing directory, every session names a defined persona and
agent, and each front end's token has been read (unless loaded with `tokens=False`, as
`sessions` is: the tokens then stay as written). Anything else raises `ConfigError`, whose
text is one sentence that names the offending key (`agent.turn_timeout_s`,
`sessions[1].cwd`, `personas.reviewer.model`) and says what is wrong with it: the CLI
prints exactly that and exits 2.

Each front end's section (`[mattermost]`, `[telegram]`, `[web]`) is its own module's
class and rules, beside that front end (`chat/*/config.py`); this module names them.

Keys beyond PRODUCT.md's example (documented for the README):

- `[agent] shutdown_grace_s = 3`: seconds between SIGTERM and SIGKILL when stopping an
  agent (> 0; a float is fine).
- `[agent] interrupt_grace_s = 10`: seconds a turn may take to end after an interrupt
  before its agent is terminated (> 0; a float is fine).
- `[agent] restart_max = 3` and `restart_window_s = 300`: an agent that dies more than
  `restart_max` times within `restart_window_s` seconds is marked failed.
- `$SUPERVISOR_WEB_LISTEN` replaces `[web] listen` (of the embedded default too); like
  every override, it does not make its section appear.

Relative paths are relative to the config file's directory; `~` follows `$HOME`. The
structuring machinery (strict types, path checks, error wording) is `config_codec`;
finding and parsing the file is `config_file`.

This module must never log, never create anything (the state directory is made by the
store) and never put the token into a repr or an error message.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar

import attrs

from supervisor.agent.config import (
    PERSONA_PROTOCOLS,
    PERSONA_REFUSED,
    NamedAgent,
    check_agents,
    check_protocol,
)
from supervisor.chat.mattermost import config as mattermost_config
from supervisor.chat.mattermost.config import MattermostConfig
from supervisor.chat.telegram import config as telegram_config
from supervisor.chat.web.config import WebConfig
from supervisor.config_codec import (
    DIRECTORY_OR_ABSENT,
    EXISTING_DIRECTORY,
    STRUCTURE_ERRORS,
    ConfigError,
    FrozenMap,
    KeyPath,
    Problem,
    at_least,
    converter,
    describe,
    first_problem,
    frozen_map,
    not_empty,
    positive,
)
from supervisor.config_file import find_config_path, read_toml

__all__ = [
    "AgentConfig",
    "Config",
    "ConfigError",
    "FilesConfig",
    "FrozenMap",
    "MattermostConfig",
    "Persona",
    "RenderConfig",
    "SessionSpec",
    "StateConfig",
    "config_from_dict",
    "find_config_path",
    "load_config",
]

PERMISSION_MODES: Final = (
    "default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto", "manual",
)  # fmt: skip
NAME_RULE: Final = '1–64 of letters, digits, "-", "_", "."'
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
DEFAULT_CWD: Final = "~"
DEFAULT_STATE_DIR: Final = "~/.local/state/supervisor"

S = TypeVar("S")  # a front end's section


# --- rules on single values, shared by the classes below -----------------------------


def _command(_: Any, attribute: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    if not value:
        raise Problem((attribute.name,), 'must name the program to run, like ["claude"]')
    not_empty(_, attribute, value)


def _permission_mode(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if value not in PERMISSION_MODES:
        choices = ", ".join(PERMISSION_MODES)
        raise Problem((attribute.name,), f"must be one of {choices}, not {describe(value)}")


def _environment(_: Any, attribute: attrs.Attribute[Any], value: Mapping[str, str]) -> None:
    for name in value:
        # The OS cannot hold these; spawning the agent would fail much later.
        if not name or "=" in name or "\0" in name:
            raise Problem((attribute.name, name), "is not a valid environment variable name")


def _env_repr(env: Mapping[str, str]) -> str:
    # Values are often API keys: show only the names.
    return "{" + ", ".join(f"{name!r}: '…'" for name in env) + "}"


def _session_name(_: Any, attribute: attrs.Attribute[Any], value: str) -> None:
    if not _NAME.fullmatch(value):
        raise Problem((attribute.name,), f"{describe(value)} is not a valid name ({NAME_RULE})")


# --- the configuration ----------------------------------------------------------------


@attrs.frozen
class AgentConfig:
    """`[agent]`: how each session's agent process, of any protocol, is started and watched
    (an `[agents.NAME]` is one too: its own keys over `[agent]`'s, `NamedAgent.over`).

    Timeouts are whole seconds; 0 turns a limit off (`idle_suspend_s` is off by default).
    `shutdown_grace_s` is the wait between SIGTERM and SIGKILL; `interrupt_grace_s` how long a
    turn may take to end after an interrupt before its agent is terminated; an agent that dies more
    than `restart_max` times within `restart_window_s` seconds is marked failed.
    """

    command: tuple[str, ...] = attrs.field(default=("claude",), validator=_command)
    protocol: str = attrs.field(default="claude", validator=check_protocol)
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(
        factory=FrozenMap, converter=frozen_map, validator=_environment, repr=_env_repr
    )
    permission_mode: str = attrs.field(default="default", validator=_permission_mode)
    default_cwd: Annotated[Path, EXISTING_DIRECTORY] = attrs.field(factory=Path.home)
    turn_timeout_s: int = attrs.field(default=1800, validator=at_least(0))
    approval_timeout_s: int = attrs.field(default=600, validator=at_least(0))
    idle_suspend_s: int = attrs.field(default=0, validator=at_least(0))
    stall_timeout_s: int = attrs.field(default=300, validator=at_least(0))
    notify_after_s: int = attrs.field(default=60, validator=at_least(0))
    shutdown_grace_s: float = attrs.field(default=3.0, validator=positive)
    interrupt_grace_s: float = attrs.field(default=10.0, validator=positive)
    restart_max: int = attrs.field(default=3, validator=at_least(0))
    restart_window_s: int = attrs.field(default=300, validator=positive)


@attrs.frozen
class RenderConfig:
    """`[render]`: how agent output is shown in a thread."""

    edit_interval_ms: int = attrs.field(default=700, validator=at_least(0))
    show_thinking: bool = True


@attrs.frozen
class FilesConfig:
    """`[files]`: size limits, in MB, for attachments and `!get`."""

    max_upload_mb: int = attrs.field(default=50, validator=at_least(0))
    max_image_mb: int = attrs.field(default=5, validator=at_least(0))
    max_get_mb: int = attrs.field(default=50, validator=at_least(0))


@attrs.frozen
class StateConfig:
    """`[state]`: where the mapping file lives; created by the store, not here."""

    dir: Annotated[Path, DIRECTORY_OR_ABSENT] = attrs.field(
        factory=lambda: Path.home() / ".local" / "state" / "supervisor"
    )


@attrs.frozen
class SessionSpec:
    """One `[[sessions]]` entry: a session that exists from the first start on.

    `cwd` defaults to `agent.default_cwd`; `persona` is "" for none.
    """

    name: str = attrs.field(validator=_session_name)
    cwd: Annotated[Path, EXISTING_DIRECTORY]
    persona: str = ""
    agent: str = ""  # an [agents.NAME]; "" is the default [agent]


@attrs.frozen
class Persona:
    """One `[personas.NAME]` preset; "" means "the agent's own default" (for `agent`: the
    default `[agent]`, unless `!new` or the `[[sessions]]` entry names one)."""

    append_system_prompt: str = ""
    model: str = ""
    agent: str = ""  # an [agents.NAME]

    def takes_protocol(self, protocol: str) -> bool:
        """Whether an agent of `protocol` gets all this persona says."""
        return protocol in PERSONA_PROTOCOLS or not (self.append_system_prompt or self.model)


def _sessions(config: Any, attribute: attrs.Attribute[Any], value: tuple[SessionSpec, ...]) -> None:
    seen: dict[str, int] = {}
    for index, session in enumerate(value):
        if session.name in seen:
            raise Problem(
                (attribute.name, index, "name"),
                f"{describe(session.name)} is already used by sessions[{seen[session.name]}]",
            )
        seen[session.name] = index
        if session.persona and session.persona not in config.personas:
            raise Problem(
                (attribute.name, index, "persona"),
                f"{describe(session.persona)} is not defined in [personas]",
            )
        _check_agent_named(config, (attribute.name, index, "agent"), session.agent)
        persona = config.personas.get(session.persona)
        if persona is not None and (session.agent or not persona.agent):  # (its own agent: `_personas`)
            _check_persona_taken(config, (attribute.name, index, "persona"), persona, session.agent)


def _personas(config: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Persona]) -> None:
    for name, persona in value.items():
        if not _NAME.fullmatch(name):
            raise Problem((attribute.name, name), f"is not a valid persona name ({NAME_RULE})")
        _check_agent_named(config, (attribute.name, name, "agent"), persona.agent)
        if persona.agent:
            field = "append_system_prompt" if persona.append_system_prompt else "model"
            _check_persona_taken(config, (attribute.name, name, field), persona, persona.agent)


def _check_persona_taken(config: Any, key: KeyPath, persona: Persona, agent: str) -> None:
    """A persona's system prompt and model reach only an agent whose protocol takes them
    (Claude Code's flags): with another, its instructions would be dropped without a word."""
    if not persona.takes_protocol(config.protocol_of(agent)):
        raise Problem(key, f"cannot reach the agent {describe(agent)}: {PERSONA_REFUSED}")


def _check_agent_named(config: Any, key: KeyPath, agent: str) -> None:
    """`agent = "NAME"` of a session or persona names a configured agent ("": the default),
    as `!new ... agent=NAME` takes it: the default by its name too."""
    if agent and agent not in (*config.agents, config.default_agent_name):
        raise Problem(key, f"{describe(agent)} is not defined in [agents]")


@attrs.frozen
class Config:
    """The whole configuration; see the module docstring for the rules it obeys."""

    mattermost: MattermostConfig | None = None  # `[mattermost]`, when present
    agent: AgentConfig = attrs.field(factory=AgentConfig)
    render: RenderConfig = attrs.field(factory=RenderConfig)
    files: FilesConfig = attrs.field(factory=FilesConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    telegram: telegram_config.TelegramConfig | None = None  # `[telegram]`, when present
    web: WebConfig | None = None  # `[web]`, when present (the embedded default has it)
    # Validated after `personas` is set: attrs runs validators once all fields are.
    sessions: tuple[SessionSpec, ...] = attrs.field(default=(), validator=_sessions)
    personas: Mapping[str, Persona] = attrs.field(
        factory=FrozenMap, converter=frozen_map, validator=_personas
    )
    agents: Mapping[str, NamedAgent] = attrs.field(
        factory=FrozenMap, converter=frozen_map, validator=check_agents
    )

    @property
    def default_agent_name(self) -> str:
        """What `[agent]` is called: its protocol's name unless an `[agents.NAME]` takes it."""
        return self.agent.protocol if self.agent.protocol not in self.agents else "default"

    def protocol_of(self, agent: str) -> str:
        """The protocol of the agent `agent = "NAME"` names ("" or the default's name: `[agent]`)."""
        named = self.agents.get(agent) if agent else None
        return named.protocol if named is not None else self.agent.protocol


# --- environment overrides and defaults that depend on other keys ---------------------


@attrs.frozen
class EnvOverride:
    """An environment variable that replaces a key (and drops the keys it `displaces`)."""

    variable: str
    section: str
    key: str
    displaces: tuple[str, ...] = ()


ENV_OVERRIDES: Final = (
    EnvOverride(mattermost_config.URL_VARIABLE, "mattermost", "url"),
    EnvOverride(mattermost_config.TOKEN_VARIABLE, "mattermost", "token", ("token_file",)),
    EnvOverride(telegram_config.TOKEN_VARIABLE, "telegram", "token", ("token_file",)),
    EnvOverride("SUPERVISOR_WEB_LISTEN", "web", "listen"),
)


def _section(raw: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A copy of `raw[name]` to edit, created when absent; None when it is not a table
    (structuring then reports that)."""
    value = raw.setdefault(name, {})
    if not isinstance(value, Mapping):
        return None
    raw[name] = dict(value)
    return raw[name]  # type: ignore[no-any-return]


def _prepared(data: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    raw = dict(data)
    for override in ENV_OVERRIDES:
        value = env.get(override.variable, "")
        if override.section not in raw:  # a variable alone does not make a front end appear
            continue
        table = _section(raw, override.section)
        if value and table is not None:  # an empty variable counts as unset
            table[override.key] = value
            for displaced in override.displaces:
                table.pop(displaced, None)
    # Path defaults go through the same ~ expansion and checks as written values.
    agent = _section(raw, "agent")
    default_cwd = agent.setdefault("default_cwd", DEFAULT_CWD) if agent is not None else DEFAULT_CWD
    state = _section(raw, "state")
    if state is not None:
        state.setdefault("dir", DEFAULT_STATE_DIR)
    sessions = raw.get("sessions")
    if isinstance(sessions, list):
        raw["sessions"] = [
            {"cwd": default_cwd, **entry} if isinstance(entry, Mapping) else entry
            for entry in sessions
        ]
    return raw


# Keys whose values an error message must not repeat.
_SECRETS: Final = {("mattermost", "token"), ("telegram", "token")}


def _with_token(name: str, section: S | None, with_token: Callable[[S], S]) -> S | None:
    """A front end's section with its token read; its `Problem` keyed under `name`."""
    if section is None:
        return None
    try:
        return with_token(section)
    except Problem as exc:
        raise Problem((name, *exc.path), exc.problem) from None


def _from_environment(error: ConfigError, env: Mapping[str, str]) -> ConfigError:
    """Say so when the bad value came from a variable rather than the file."""
    for override in ENV_OVERRIDES:
        key = f"{override.section}.{override.key}"
        if error.key == key and env.get(override.variable):
            message = error.message.replace(key, f"{key} (from {override.variable})", 1)
            return ConfigError(error.key, message)
    return error


# --- entry points ----------------------------------------------------------------------


def config_from_dict(
    data: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    *,
    tokens: bool = True,
) -> Config:
    """Build a `Config` from parsed TOML (or a test's dict).

    `env` defaults to `os.environ`; relative paths resolve against `base_dir` (default:
    the current directory). Reads the token file (unless `tokens` is false: for what
    needs no server, the tokens stay as written) and checks directories; creates nothing.
    """
    env = os.environ if env is None else env
    if not isinstance(data, Mapping):
        raise ConfigError("", f"the configuration must be a table, not {describe(data)}")
    home = env.get("HOME") or os.path.expanduser("~")
    try:
        conv = converter(home, (base_dir or Path.cwd()).absolute())
    except FileNotFoundError:  # the current directory was deleted under the shell
        raise ConfigError("", "the current directory no longer exists: cd to one that does") from None
    try:
        config = conv.structure(_prepared(data, env), Config)
        if config.mattermost is None and config.web is None and config.telegram is None:
            raise ConfigError(
                "mattermost",
                "the configuration has no front end: add a [mattermost], [telegram] or [web] section",
            )
        if not tokens:
            return config
        return attrs.evolve(
            config,
            mattermost=_with_token("mattermost", config.mattermost, mattermost_config.with_token),
            telegram=_with_token("telegram", config.telegram, telegram_config.with_token),
        )
    except STRUCTURE_ERRORS as exc:
        raise _from_environment(ConfigError(*first_problem(exc, _SECRETS)), env) from None
    except ConfigError as exc:
        raise _from_environment(exc, env) from None


def load_config(path: Path, env: Mapping[str, str] | None = None, *, tokens: bool = True) -> Config:
    """Read and check the TOML file at `path`; `env` defaults to `os.environ`."""
    return config_from_dict(read_toml(path), env, base_dir=path.absolute().parent, tokens=tokens)


def embedded_default(env: Mapping[str, str] | None = None) -> Config:
    """What `run` serves when no configuration file exists (PRODUCT: the embedded
    default): the local web chat alone, the default agent, the default state dir."""
    # Its paths are all under `~`: no need of the current directory (which may be gone).
    return config_from_dict({"web": {}}, env, base_dir=Path("/"))
