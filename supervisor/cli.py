"""The command line: `run`, `check`, `sessions`, `--version`.

Exit status: 0 clean stop; 2 unusable configuration or arguments (one sentence on
stderr naming the key); 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import __version__, stop_signals

# Imported once the stop signals are held (most of a start's imports are these and later).
if TYPE_CHECKING:
    from supervisor.config import Config

log = logging.getLogger("supervisor")

# Work done in worker threads (the web chat's SQLite calls, the store's snapshots, and its
# commits once the disk proved slow) needs the GIL back to report each call done. CPython
# makes a busy event loop give the GIL up only every 5 ms by default: a wait a prompt's
# handled mark paid before the prompt went to its agent, when every commit ran in a thread.
# 0.5 ms bounds it (routing p99 at 200 sessions then: ~5.4 -> ~4.1 ms in side-by-side
# runs; throughput equal).
GIL_SWITCH_INTERVAL_S = 0.0005


def version_text() -> str:
    try:
        from supervisor import _build_info  # type: ignore[attr-defined]  # written by the zipapp build

        commit = getattr(_build_info, "COMMIT", "")
    except ImportError:
        commit = ""
    return f"supervisor {__version__}" + (f" ({commit})" if commit else "")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="supervisor",
        description="Run coding-agent sessions (Claude Code, OpenCode, any ACP agent) behind chat threads:"
        " Mattermost, Telegram or the local web chat.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in (
        ("run", "connect and serve until SIGINT, SIGTERM or SIGHUP (the main job); with no config file at all, serve the local web chat on 127.0.0.1:8765 and print its address"),
        ("check", "check the configuration, the server, the token, the users and the agent"),
        ("sessions", "print the persisted thread <-> session table"),
    ):
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("--config", metavar="PATH", help="config file (default: $SUPERVISOR_CONFIG, ./supervisor.toml, ~/.config/supervisor/supervisor.toml)")
        cmd.add_argument("--log-format", choices=("text", "json"), default="text",
                         help="log lines on stderr: human-readable text (default) or JSON objects, one per line")
        if name == "sessions":
            cmd.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _load(path_arg: str | None, *, tokens: bool = True) -> tuple[Config, Path | None]:
    """The configuration and its file; with no file anywhere and none named, the embedded
    default (the local web chat alone) and None. `tokens`: read the chat tokens."""
    from supervisor.config import ConfigError, embedded_default, find_config_path, load_config

    try:
        cwd: Path | None = Path.cwd()
    except FileNotFoundError:  # deleted under the shell: only a relative path needs it
        cwd = None
    try:
        path = find_config_path(path_arg, os.environ, cwd, Path.home())
    except ConfigError:
        if path_arg is None and not os.environ.get("SUPERVISOR_CONFIG"):
            return embedded_default(os.environ), None
        raise
    return load_config(path, os.environ, tokens=tokens), path


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "run":
        try:
            code = _command(parser, args)
            if sys.stdout is not None:  # None when started with stdout closed (`>&-`)
                sys.stdout.flush()  # here, where a reader gone is caught, not at the exit
            return code
        except BrokenPipeError:
            # The reader went away (`sessions --json | head`): no traceback for that, and
            # no second complaint when the exit flushes what is left.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
    # A stop asked for while starting waits until the supervisor listens for it
    # (`app.run`), and is then a clean one: no death by the signal. Released however
    # `run` ends: a caller in the same process (a test) and the children it starts later
    # would otherwise inherit the block.
    stop_signals.hold()
    try:
        return _command(parser, args)
    finally:
        stop_signals.end_hold()


def _command(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command is None:
        parser.print_usage(sys.stderr)
        print("supervisor: a command is required (run, check or sessions)", file=sys.stderr)
        return 2
    from supervisor.config import ConfigError

    try:
        # `sessions` reads the state alone: it must work by hand too, for someone who may
        # not read the service's token (in a root-only environment file, say).
        config, path = _load(args.config, tokens=args.command != "sessions")
    except ConfigError as exc:
        print(f"supervisor: {exc}", file=sys.stderr)
        return 2
    from supervisor import logs

    secrets = [config.mattermost.token] if config.mattermost else []
    if config.telegram:  # the client keeps it out of every line already; this is a second net
        secrets.append(config.telegram.token)
    logs.setup(args.log_format, secrets=secrets)
    if args.command == "run" and config.web is not None:
        # After the log's set-up, so that a damaged token file is said in its format; set up
        # again to mask the token.
        logs.setup(args.log_format, secrets=secrets + _web_token(config))
    _warn_of_shared_token_files(config, path)
    if args.command == "run":
        return _run(config)
    if args.command == "sessions":
        return _sessions(config, as_json=args.json)
    from supervisor.doctor import check

    return check(config, path)


def _warn_of_shared_token_files(config: Config, config_path: Path | None) -> None:
    """A token file, or a configuration file with a `token = "..."`, that every user of the
    machine can read: said, not refused (a service that ran yesterday must not stay down
    after an upgrade for it)."""
    from supervisor.chat.mattermost.config import TOKEN_VARIABLE as MATTERMOST_TOKEN
    from supervisor.chat.telegram.config import TOKEN_VARIABLE as TELEGRAM_TOKEN

    holders: list[Path] = []
    for section, variable in ((config.mattermost, MATTERMOST_TOKEN), (config.telegram, TELEGRAM_TOKEN)):
        if section is None:
            continue
        if section.token_file is not None:
            holders.append(section.token_file)
        elif section.token and not os.environ.get(variable) and config_path is not None:
            holders.append(config_path)  # neither a file's nor the variable's: the config's own
    for path in dict.fromkeys(holders):
        try:
            mode = path.stat().st_mode
        except OSError:  # not ours to read (`sessions` by hand, beside the service): not said
            continue
        if stat.S_ISREG(mode) and mode & stat.S_IROTH:
            log.warning("%s can be read by every user of this machine, and anyone who reads it can act as "
                        "the bot: chmod 600 it", path)  # fmt: skip


def _web_token(config: Config) -> list[str]:
    """The web chat's access token, so no log line can show it (it is made now if new)."""
    from supervisor.chat.web.security import load_or_create_token
    from supervisor.runtime.store import STATE_DIR_MODE

    try:
        # The first thing written to a new state directory: made private as the store makes it.
        config.state.dir.mkdir(STATE_DIR_MODE, parents=True, exist_ok=True)
        return [load_or_create_token(config.state.dir)]
    except OSError:
        return []  # the web chat says what is wrong when it starts


def _run(config: Config) -> int:
    import trio

    from supervisor.app import run

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    try:
        trio.run(run, config)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        said = _said_plainly(exc)
        if said is not None:
            log.error("%s", said)
            return 1
        log.exception("the supervisor failed")
        return 1
    return 0


def _said_plainly(exc: BaseException) -> BaseException | None:
    """A failure that is one sentence for the person (the web chat's port is taken, the
    state directory is another supervisor's or cannot be written, a chat server refuses
    the token or the users), found in the exception groups the nurseries wrap it in;
    None for anything else."""
    from supervisor.chat import CannotStart
    from supervisor.runtime.store import StateDirInUse, StateDirUnwritable

    if isinstance(exc, (CannotStart, StateDirInUse, StateDirUnwritable)):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _said_plainly(inner)
            if found is not None:
                return found
    return None


def _sessions(config: Config, *, as_json: bool) -> int:
    """The persisted table. Read-only: a damaged file is reported, never moved or rewritten
    (a running daemon may own it; only `run` sets damaged files aside)."""
    import attrs

    from supervisor.agent.registry import AgentRegistry, conversation_id
    from supervisor.runtime.store import read_state

    agents = AgentRegistry(config)
    try:
        on_disk = read_state(config.state.dir) if config.state.dir.is_dir() else None
    except OSError as exc:
        hint = ": run sessions as the service's user" if isinstance(exc, PermissionError) else ""
        print(f"supervisor: cannot read the state in {config.state.dir} ({exc.strerror or exc}){hint}",
              file=sys.stderr)  # fmt: skip
        return 1
    for problem in on_disk.problems if on_disk else ():
        print(f"supervisor: {problem}", file=sys.stderr)
    records = sorted(on_disk.state.sessions.values(), key=lambda r: r.created_at) if on_disk else []
    if as_json:
        # The record as stored, and the conversation id as the agent's terminal takes it
        # ("" while none): `id` is ours, and not the agent's for an ACP or `resume=` session.
        rows = [{**attrs.asdict(r), "conversation_id": conversation_id(agents.of(r), r)} for r in records]
        print(json.dumps(rows, indent=2))
        return 0
    if not records:
        print("no sessions")
        return 0
    print(f"{'NAME':<20} {'STATUS':<10} {'THREAD':<28} {'AGENT':<12} {'AGENT SESSION':<38} CWD")
    for r in records:
        agent = agents.of(r)
        session = conversation_id(agent, r) or "-"
        print(f"{r.name:<20} {r.status:<10} {r.root_id or '-':<28} {agent.name:<12} {session:<38} {r.cwd}")
    return 0
