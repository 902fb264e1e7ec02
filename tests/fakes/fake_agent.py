#!/usr/bin/env python3
"""A stand-in for the Claude Code CLI 2.1.330 that speaks its stream-json protocol.

Tests launch it as the agent command (`[sys.executable, "tests/fakes/fake_agent.py"]`) in
place of `claude`. Frame names, key order, nesting and frame order are copied from the
real captures in `shared/reference/claude-code/transcripts/`; only the long lists (tools,
commands, models) are shortened. Standard library only: it must run under `python3 -I`.

Command line: `--output-format stream-json --input-format stream-json --verbose` (required,
like `-p` mode of the CLI), `--permission-prompt-tool stdio`, `--include-partial-messages`,
`--replay-user-messages`, `--session-id ID`, `--resume ID`, `--continue`, `--fork-session`,
`--permission-mode M`, `--model M`, `--append-system-prompt S`, `--no-session-persistence`,
`--version`; both `--flag value` and `--flag=value`; anything else is recorded and ignored.
Errors as the CLI prints them (stderr, exit 1): a `--session-id` that already has a
conversation, a `--resume` of an unknown id, a malformed session id, missing `--verbose`.

The "model": bracketed directives anywhere in a prompt (DIRECTIVES below); the rest of the
prompt is echoed: `echo #N: <text> (earlier: 'first', 'second')`. Each result adds
COST_PER_TURN to `total_cost_usd`, which, as in the CLI, counts for the whole session,
across `--resume`.

Conversations: `$HOME/.fake-agent/<session id>.json` (prompts, answers, "allow" rules,
cost), replaced atomically when a new session's first turn starts and after every turn.

Test log, when `$FAKE_AGENT_LOG` names a directory: `<dir>/<pid>.jsonl`, one JSON object
per line, each with `event` and `t` (epoch seconds): `start` {pid, pgid, argv, cwd,
session_id, resumed, model, permission_mode, unknown_args}; `stdin` {line: parsed JSON}
(or {raw, error}); `stdout` {line} (logged just before it is written); `exit` {code, why};
`signal` {signum, ignored}; `child` {pid} for [grandchild]; `ignored` / `note` /
`unexpected_response`. `$FAKE_AGENT_SLOW_START=<seconds>` delays reading stdin.

Threads: the main thread reads stdin and answers control requests at once (like the CLI,
which keeps reading while a turn runs); one worker thread runs the turns one after another.
Shared state is guarded by `Agent.cond`; stdout lines are written whole under
`Agent.out_lock`. Lock order: `cond` before `out_lock`, never the reverse.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
import traceback
from collections import deque
from typing import Any

VERSION = "2.1.330"
DEFAULT_MODEL = "claude-opus-5-5"
COST_PER_TURN = 0.0105  # every result adds this to total_cost_usd, except [api-error]
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto")
REJECTED_TOOL_TEXT = (
    "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if"
    " it was a file edit, the new_string was NOT written to the file). STOP what you are"
    " doing and wait for the user to tell you how to proceed."
)
# What a can_use_tool request gets once stdin is closed and nobody can answer it.
NO_ANSWER_AFTER_EOF = {
    "subtype": "success",
    "response": {"behavior": "deny", "message": "stdin was closed"},
}
DIRECTIVES = {
    "slow": "[slow S] stream the answer in small deltas over S seconds",
    "flood": "[flood] text deltas without end, as fast as stdout takes them, until interrupted",
    "deltas": "[deltas N] exactly N text deltas (a short answer is padded with dots)",
    "long": "[long N] an answer of exactly N characters, in numbered lines",
    "fence": "[fence N] about N characters, nearly all inside one ``` code fence",
    "think": "[think] a thinking block before the answer",
    "ponder": "[ponder S] S seconds of thinking deltas (a frame every 0.2 s) before the answer",
    "text2": "[text2] text block, auto-approved Bash call, then a second text block",
    "tool": "[tool CMD] a Bash call that asks can_use_tool (repeatable)",
    "write": "[write PATH] a Write call that asks can_use_tool (repeatable)",
    "tools": "[tools N] N Bash calls in one turn, all asked at once",
    "hang": "[hang] nothing after system/init until interrupted",
    "hang-hard": "[hang-hard] nothing at all, interrupts get no answer; signals still work",
    "stubborn": "[stubborn] like hang-hard, and SIGTERM/SIGINT are ignored: SIGKILL only",
    "crash": "[crash] exit 1 after system/init and one delta, with no result",
    "crash-once": "[crash-once] crash the first time this session sees this prompt",
    "api-error": "[api-error] synthetic 'API Error: 500' answer, is_error result",
    "exit-after": "[exit-after S?] answer, then exit 0 even though stdin is open (S seconds later, reading nothing more)",
    "mute-after": "[mute-after] answer, then close stdout and live on (only signals end it)",
    "slow-exit": "[slow-exit S N] answer, then close stdout, take S seconds (a flush), exit N",
    "stderr": "[stderr N] write N bytes to stderr first",
    "grandchild": "[grandchild] spawn a sleeping child in our process group",
    "whoami": "[whoami] answer 'whoami {json}' with pid, session, model, mode, cwd, args",
    "env": "[env NAME] answer 'env NAME=<value>'",
}
DIRECTIVE_RE = re.compile(r"\[(" + "|".join(map(re.escape, DIRECTIVES)) + r")(?:\s+([^\]]*))?\]")
UUID_RE = re.compile(
    r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)

TOOLS = ["Task", "Bash", "Edit", "Glob", "Grep", "Read", "WebFetch", "WebSearch", "Write"]
SLASH_COMMANDS = ["compact", "context", "cost", "init", "review", "security-review"]
AGENTS = ["claude", "Explore", "general-purpose", "Plan"]
CAPABILITIES = ["interrupt_receipt_v1", "interrupt_cancel_queued_v1", "msg_lifecycle_v1"]
SUBAGENT_STATS = {
    "spawned": 0,
    "requested": {"background": 0, "foreground": 0, "unset": 0},
    "started_in_background": 0,
    "max_depth": 0,
    "spawned_by_subagents": 0,
    "completed": 0,
    "failed": 0,
    "killed": {"parent": 0, "user": 0, "system": 0},
    "refused": {"depth_limit": 0, "concurrency_limit": 0, "budget": 0},
    "by_type": {},
}


def new_uuid() -> str:
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Interrupted(Exception):
    """Unwinds a turn that the host interrupted (or a denial with `interrupt: true`)."""


# --- command line ------------------------------------------------------------------

_VALUE_FLAGS_TEXT = """
    --output-format --input-format --permission-prompt-tool --session-id --resume -r
    --permission-mode --model --append-system-prompt --system-prompt --system-prompt-file
    --append-system-prompt-file --setting-sources --settings --add-dir --allowedTools
    --allowed-tools --disallowedTools --disallowed-tools --tools --max-turns --mcp-config
    --fallback-model --max-budget-usd --task-budget --betas --plugin-dir --thinking
    --max-thinking-tokens --thinking-display --effort --json-schema --debug-file
    --permission-prompts --agents
"""
_BOOL_FLAGS_TEXT = """
    --verbose --include-partial-messages --replay-user-messages -p --print --continue -c
    --fork-session --no-session-persistence --include-hook-events --strict-mcp-config
    --dangerously-skip-permissions --debug --debug-to-stderr
"""
VALUE_FLAGS = frozenset(_VALUE_FLAGS_TEXT.split())  # flags that take a value
BOOL_FLAGS = frozenset(_BOOL_FLAGS_TEXT.split())


class Usage(Exception):
    """A command line the real CLI would refuse: message for stderr, exit status 1."""


def parse_args(argv: list[str]) -> dict[str, Any]:
    opts: dict[str, Any] = {"values": {}, "flags": set(), "add_dirs": [], "unknown": []}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        name, eq, value = arg.partition("=")
        if name in VALUE_FLAGS:
            if not eq:
                if i >= len(argv):
                    raise Usage(f"error: option '{name} <value>' argument missing")
                value = argv[i]
                i += 1
            if name == "--add-dir":
                opts["add_dirs"].append(value)
            opts["values"]["--resume" if name == "-r" else name] = value
        elif arg in BOOL_FLAGS:
            opts["flags"].add({"-p": "--print", "-c": "--continue"}.get(arg, arg))
        else:
            opts["unknown"].append(arg)
    return opts


# --- test log ------------------------------------------------------------------------


class Log:
    """JSON lines for tests in $FAKE_AGENT_LOG/<pid>.jsonl; one os.write per line, so it
    is safe from any thread and from a signal handler, and readable while we run."""

    def __init__(self) -> None:
        self.fd: int | None = None
        directory = os.environ.get("FAKE_AGENT_LOG")
        if directory:
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, f"{os.getpid()}.jsonl")
            self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def event(self, name: str, **fields: Any) -> None:
        if self.fd is None:
            return
        record = {"event": name, **fields, "t": time.time()}
        with contextlib.suppress(OSError):
            write_all(self.fd, (dumps(record) + "\n").encode())


# --- conversations -------------------------------------------------------------------


def state_dir() -> str:
    return os.path.join(os.path.expanduser("~"), ".fake-agent")


def conversation_path(session_id: str) -> str:
    return os.path.join(state_dir(), f"{session_id}.json")


def load_conversation(session_id: str) -> dict[str, Any] | None:
    try:
        with open(conversation_path(session_id), encoding="utf-8") as f:
            conv: dict[str, Any] = json.load(f)
    except (OSError, ValueError):
        return None
    return conv


def newest_conversation_for(cwd: str) -> dict[str, Any] | None:
    best: tuple[float, dict[str, Any]] | None = None
    try:
        names = os.listdir(state_dir())
    except OSError:
        return None
    for name in names:
        if not name.endswith(".json"):
            continue
        conv = load_conversation(name[: -len(".json")])
        if conv and conv.get("cwd") == cwd and (best is None or conv["updated"] > best[0]):
            best = (conv["updated"], conv)
    return best[1] if best else None


def resolve_session(opts: dict[str, Any], cwd: str) -> tuple[str, dict[str, Any], bool]:
    """(session id, conversation, resumed?) as the real CLI would pick them, or Usage."""
    values, flags = opts["values"], opts["flags"]
    wanted = values.get("--session-id")
    resume = values.get("--resume")
    fork = "--fork-session" in flags
    if wanted is not None and not UUID_RE.match(wanted):
        raise Usage("Error: Invalid session ID. Must be a valid UUID.")
    if wanted is not None and (resume or "--continue" in flags) and not fork:
        raise Usage(
            "Error: --session-id can only be used with --continue or --resume"
            " if --fork-session is also specified."
        )
    old: dict[str, Any] | None = None
    if resume is not None:
        old = load_conversation(resume) if resume else None
        if old is None:
            raise Usage(f"No conversation found with session ID: {resume}")
    elif "--continue" in flags:
        old = newest_conversation_for(cwd)
        if old is None:
            raise Usage("No conversation found to continue")
    if old is not None and not fork:
        return old["session_id"], old, True
    session_id = wanted or new_uuid()
    if load_conversation(session_id) is not None:
        raise Usage(f"Error: Session ID {session_id} is already in use.")
    conv: dict[str, Any] = {
        "session_id": session_id,
        "cwd": cwd,
        "created": time.time(),
        "updated": time.time(),
        "turns": [],
        "rules": [],
        "crashed_prompts": [],
        "total_cost_usd": 0.0,
        "model_usage": {},
    }
    if old is not None:  # a fork keeps the history and the rules, not the bill
        conv["turns"] = list(old.get("turns", []))
        conv["rules"] = list(old.get("rules", []))
    return session_id, conv, old is not None


# --- prompts and answers -------------------------------------------------------------


class Prompt:
    """One user message from stdin, with its directives pulled out."""

    def __init__(self, message: dict[str, Any]) -> None:
        self.message = message
        self.uuid: str | None = message.get("uuid")
        content = (message.get("message") or {}).get("content", "")
        texts: list[str] = []
        self.images: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for block in content:
                if not isinstance(block, dict):
                    continue
                if block.get("type") == "text":
                    texts.append(str(block.get("text", "")))
                elif block.get("type") == "image":
                    self.images.append(str((block.get("source") or {}).get("media_type", "?")))
        self.raw = "\n".join(texts)
        self.directives: list[tuple[str, str]] = [
            (m.group(1), (m.group(2) or "").strip()) for m in DIRECTIVE_RE.finditer(self.raw)
        ]
        self.text = re.sub(r"[ \t]+", " ", DIRECTIVE_RE.sub("", self.raw)).strip()

    def has(self, name: str) -> bool:
        return any(n == name for n, _ in self.directives)

    def arg(self, name: str, default: str = "") -> str:
        for n, value in self.directives:
            if n == name:
                return value
        return default

    def number(self, name: str, default: float) -> float:
        try:
            return float(self.arg(name))
        except ValueError:
            return default


def quote_list(prompts: list[str]) -> str:
    if not prompts:
        return "none"
    quoted = [f"'{p}'" for p in prompts]
    if len(quoted) > 5:
        quoted = [*quoted[:2], f"… {len(quoted) - 4} more …", *quoted[-2:]]
    return ", ".join(quoted)


def long_text(header: str, n: int) -> str:
    lines = [header]
    size = len(header)
    k = 1
    while size < n:
        line = f"line {k:05d}: the quick brown fox jumps over the lazy dog"
        lines.append(line)
        size += len(line) + 1
        k += 1
    return "\n".join(lines)[:n]


def fence_text(header: str, n: int) -> str:
    head = f"{header}\n\n```python\n"
    tail = "```\nThat was the code."
    body: list[str] = []
    size = len(head) + len(tail)
    k = 1
    while size < n:
        line = f"print('row {k:05d}: fenced code keeps going')\n"
        body.append(line)
        size += len(line)
        k += 1
    return head + "".join(body) + tail


def split_even(text: str, count: int) -> list[str]:
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    parts, start = [], 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        parts.append(text[start:end])
        start = end
    return parts


# --- the agent -----------------------------------------------------------------------


class ToolCall:
    def __init__(self, name: str, tool_input: dict[str, Any], description: str) -> None:
        self.name = name
        self.input = tool_input
        self.description = description
        self.id = "toolu_" + os.urandom(12).hex()
        self.request_id = ""
        self.answer: dict[str, Any] | None = None  # the host's control_response body
        self.cancelled = False
        self.outcome = ""

    def command(self) -> str:
        return str(self.input.get("command", ""))


class Agent:
    def __init__(self, opts: dict[str, Any], log: Log, cwd: str) -> None:
        self.opts = opts
        self.log = log
        self.cwd = cwd
        values, flags = opts["values"], opts["flags"]
        self.session_id, self.conv, self.resumed = resolve_session(opts, cwd)
        self.model = values.get("--model") or DEFAULT_MODEL
        mode = values.get("--permission-mode", "default")
        if mode == "manual":
            mode = "default"
        if mode not in PERMISSION_MODES:
            raise Usage(
                f"error: option '--permission-mode <mode>' argument '{mode}' is invalid."
                f" Allowed choices are {', '.join(PERMISSION_MODES)}."
            )
        self.mode = "bypassPermissions" if "--dangerously-skip-permissions" in flags else mode
        self.partial = "--include-partial-messages" in flags
        self.replay = "--replay-user-messages" in flags
        self.prompt_tool = values.get("--permission-prompt-tool")
        # As the CLI: rules given on the command line and rules allowed for the session
        # live in this process only; a resumed conversation does not bring them back.
        self.session_rules = parse_rules(
            values.get("--allowedTools") or values.get("--allowed-tools") or ""
        )
        self.persist = "--no-session-persistence" not in flags
        self.saved = os.path.exists(conversation_path(self.session_id))
        self.out_lock = threading.Lock()
        self.cond = threading.Condition()
        # Guarded by cond:
        self.queue: deque[Prompt] = deque()
        self.eof = False
        self.turn_active = False  # a prompt was taken and its result is not out yet
        self.interrupted = False  # the host interrupted the active turn
        self.deaf = False  # [hang-hard]: interrupts get no answer at all
        self.stubborn = False  # [stubborn]: SIGTERM and SIGINT are ignored
        self.flooding = False  # [flood] runs: its stdout lines are not logged
        self.pending: dict[str, ToolCall] = {}  # can_use_tool requests awaiting an answer
        self.results = 0
        self.last_result_error = False
        self.ending = False  # [exit-after S]: what stdin still brings is never read

    # output -----------------------------------------------------------------------

    def emit(self, obj: dict[str, Any]) -> None:
        data = (dumps(obj) + "\n").encode()
        with self.out_lock:
            if not self.flooding:  # a flood's lines would make a log as large as the flood
                self.log.event("stdout", line=obj)  # first, so the log is never behind stdout
            try:
                write_all(1, data)
            except OSError:
                self.exit(1, "stdout closed")

    def exit(self, code: int, why: str = "") -> None:
        self.log.event("exit", code=code, why=why)
        os._exit(code)

    def frame(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, **fields}

    def control_response(self, request_id: str, body: dict[str, Any], **extra: Any) -> None:
        response = {"subtype": "success", "request_id": request_id, "response": body, **extra}
        self.emit({"type": "control_response", "response": response})

    def control_error(self, request_id: str, error: str, code: str | None = None) -> None:
        response: dict[str, Any] = {"subtype": "error", "request_id": request_id, "error": error}
        if code:
            response["error_code"] = code
        self.emit({"type": "control_response", "response": response})

    def lifecycle(self, prompt: Prompt, state: str) -> None:
        if prompt.uuid:
            self.emit(
                {
                    "type": "command_lifecycle",
                    "command_uuid": prompt.uuid,
                    "state": state,
                    "uuid": new_uuid(),
                    "session_id": self.session_id,
                }
            )

    def init_frame(self) -> dict[str, Any]:
        home = os.path.expanduser("~")
        return {
            "type": "system",
            "subtype": "init",
            "cwd": self.cwd,
            "session_id": self.session_id,
            "tools": TOOLS,
            "mcp_servers": [],
            "model": self.model,
            "permissionMode": self.mode,
            "slash_commands": SLASH_COMMANDS,
            "terminal_slash_commands": [],
            "apiKeySource": "ANTHROPIC_API_KEY" if os.environ.get("ANTHROPIC_API_KEY") else "none",
            "claude_code_version": VERSION,
            "output_style": "default",
            "agents": AGENTS,
            "skills": [],
            "plugins": [],
            "capabilities": CAPABILITIES,
            "analytics_disabled": True,
            "product_feedback_disabled": True,
            "served_by_anthropic": False,
            "uuid": new_uuid(),
            "memory_paths": {
                "auto": f"{home}/.claude/projects/{self.cwd.replace('/', '-')}/memory/"
            },
            "original_cwd": self.cwd,
            "additional_directories": self.opts["add_dirs"],
            "messaging_socket_path": f"/tmp/fake-agent-{os.getpid()}.sock",
            "fast_mode_state": "off",
            "fast_mode_disabled_reason": "sdk_opt_in_required",
            "per_turn_effort_active": True,
            "ultrathink_available": False,
            "ultrathink_typed_raises": False,
            "view_mode": "default",
        }

    def initialize_body(self) -> dict[str, Any]:
        with self.cond:
            busy = self.turn_active
        return {
            "commands": [
                {"name": n, "description": f"/{n}", "argumentHint": "", "builtin": True}
                for n in SLASH_COMMANDS
            ],
            "agents": [{"name": n, "description": f"the {n} agent"} for n in AGENTS],
            "output_style": "default",
            "available_output_styles": ["default", "Explanatory", "Learning"],
            "user_output_styles_dir": os.path.expanduser("~/.claude/output-styles"),
            "models": [
                {
                    "value": "default",
                    "resolvedModel": DEFAULT_MODEL,
                    "displayName": "Default (recommended)",
                    "description": "Fake default model",
                    "supportsEffort": True,
                    "supportedEffortLevels": ["low", "medium", "high"],
                    "supportsAdaptiveThinking": True,
                    "supportsFastMode": False,
                    "supportsAutoMode": True,
                    "supportsThinkingOff": False,
                }
            ],
            "account": {
                "tokenSource": "none",
                "apiKeySource": "ANTHROPIC_API_KEY",
                "apiProvider": "firstParty",
            },
            "pid": os.getpid(),
            "claude_code_version": VERSION,
            "current_permission_mode": self.mode,
            "hook_on_failure_supported": True,
            "hooks_when_unanswered_kept": 0,
            "other_hook_ask_outranks_host": True,
            "feedback_mode": {"kind": "disabled"},
            "analytics_disabled": True,
            "remote_control_auto_enable": False,
            "remote_control_auto_connect_default": False,
            "remote_control_available": False,
            "remote_control_auto_on_by_default": False,
            "ide_rc_auto_enable_gate": False,
            "fast_mode_state": "off",
            "fast_mode_disabled_reason": "sdk_opt_in_required",
            "session_state": "running" if busy else "idle",
            "capabilities": CAPABILITIES,
        }

    # persistence --------------------------------------------------------------------

    def save(self) -> None:
        self.saved = True
        if not self.persist:
            return
        self.conv["updated"] = time.time()
        os.makedirs(state_dir(), exist_ok=True)
        path = conversation_path(self.session_id)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps(self.conv, ensure_ascii=False))  # one write: json.dump is slow
        os.replace(tmp, path)

    # stdin (main thread) ------------------------------------------------------------

    def read_stdin(self) -> None:
        stdin = sys.stdin.buffer
        while True:
            raw = stdin.readline()
            if not raw:
                break
            line = raw.decode("utf-8", "replace").strip()
            if not line:
                continue
            if self.ending:  # as if it stayed in the pipe: not logged as received
                self.log.event("unread", raw=line)
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                self.log.event("stdin", raw=line, error=str(exc))
                sys.stderr.write(f"fake_agent: ignoring a line that is not JSON: {exc}\n")
                continue
            self.log.event("stdin", line=obj)
            if isinstance(obj, dict):
                self.dispatch(obj)
        self.on_eof()

    def dispatch(self, obj: dict[str, Any]) -> None:
        kind = obj.get("type")
        if kind == "user":
            prompt = Prompt(obj)
            self.lifecycle(prompt, "queued")
            with self.cond:
                self.queue.append(prompt)
                self.cond.notify_all()
        elif kind == "control_request":
            self.on_control_request(str(obj.get("request_id", "")), obj.get("request") or {})
        elif kind == "control_response":
            self.on_control_response(obj.get("response") or {})
        # Anything else (keep_alive, control_cancel_request, unknown types) is ignored.

    def on_control_request(self, request_id: str, request: dict[str, Any]) -> None:
        subtype = request.get("subtype")
        if subtype == "initialize":
            self.control_response(
                request_id,
                self.initialize_body(),
                pending_permission_requests=[],
                pending_user_dialog_requests=[],
            )
        elif subtype == "interrupt":
            self.on_interrupt(request_id, request)
        elif subtype == "set_permission_mode":
            mode = request.get("mode")
            if mode not in PERMISSION_MODES:
                self.control_error(request_id, f"Invalid permission mode: {mode}")
                return
            with self.cond:
                self.mode = str(mode)
            self.control_response(request_id, {"mode": mode})
            self.emit(
                {
                    "type": "system",
                    "subtype": "status",
                    "status": None,
                    "permissionMode": mode,
                    "uuid": new_uuid(),
                    "session_id": self.session_id,
                }
            )
        elif subtype == "set_model":
            with self.cond:
                self.model = request.get("model") or DEFAULT_MODEL
            self.control_response(request_id, {})
        else:
            self.control_error(
                request_id,
                f"Unsupported control request subtype: {subtype}",
                "unsupported_request",
            )

    def on_interrupt(self, request_id: str, request: dict[str, Any]) -> None:
        # One that comes before the worker has begun the prompt read just before it is
        # only answered, and that turn then runs whole: the worst an agent may do (Claude
        # Code 2.1.330 honours it, tests/test_e2e_real_cli.py), which the host must survive.
        with self.cond:
            if self.deaf:
                self.log.event("ignored", request_id=request_id, why="hang-hard")
                return
            if request.get("cancel_queued"):
                self.queue.clear()
            if self.turn_active:
                for call in self.pending.values():
                    if call.answer is None and not call.cancelled:
                        call.cancelled = True
                        self.emit({"type": "control_cancel_request", "request_id": call.request_id})
                self.interrupted = True
                self.cond.notify_all()
            self.control_response(request_id, {"still_queued": []})

    def on_control_response(self, response: dict[str, Any]) -> None:
        request_id = str(response.get("request_id", ""))
        with self.cond:
            call = self.pending.get(request_id)
            if call is None or call.cancelled or call.answer is not None:
                self.log.event("unexpected_response", request_id=request_id)
                return
            call.answer = response
            self.cond.notify_all()

    def on_eof(self) -> None:
        self.log.event("eof")  # stdin closed: its host is gone or ending it
        with self.cond:
            self.eof = True
            for call in self.pending.values():  # nobody is left to answer them
                if call.answer is None and not call.cancelled:
                    call.answer = NO_ANSWER_AFTER_EOF
            self.cond.notify_all()

    # the worker ---------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Sleep, but raise Interrupted as soon as the host interrupts the turn."""
        deadline = time.monotonic() + seconds
        with self.cond:
            while not self.interrupted:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self.cond.wait(min(left, 3600.0))
            raise Interrupted

    def run_turns(self) -> int:
        while True:
            with self.cond:
                while not self.queue and not self.eof:
                    self.cond.wait()
                if not self.queue:
                    return 1 if self.last_result_error else 0
                prompt = self.queue.popleft()
                self.turn_active = True
                self.interrupted = False
            turn = Turn(self, prompt)
            result = turn.run()
            with self.cond:
                self.results += 1
                self.last_result_error = bool(result["is_error"])
                self.ending = bool(prompt.arg("exit-after"))  # before its host can write more
                self.emit(result)
                self.turn_active = False
                self.interrupted = False
            self.lifecycle(prompt, "completed")
            if prompt.has("exit-after"):
                if self.ending:
                    time.sleep(float(prompt.arg("exit-after")))
                self.exit(0, "exit-after")
            if prompt.has("mute-after"):
                self.log.event("note", what="closing stdout, living on")
                os.close(1)
                while True:  # no more turns: nothing could be said
                    time.sleep(3600)
            if prompt.has("slow-exit"):
                seconds, code = prompt.arg("slow-exit").split()
                self.log.event("note", what="closing stdout, exiting slowly")
                os.close(1)
                time.sleep(float(seconds))
                self.exit(int(code), "slow-exit")


class Turn:
    """One prompt → system/init … result. Mutated only by the worker thread."""

    def __init__(self, agent: Agent, prompt: Prompt) -> None:
        self.a = agent
        self.p = prompt
        self.started = time.monotonic()
        self.number = len(agent.conv["turns"]) + 1
        self.earlier = [t["prompt"] for t in agent.conv["turns"]]
        self.msg_id: str | None = None  # the model message being streamed
        self.request_id = ""
        self.block = -1  # index of the last content block of msg_id
        self.block_open = False
        self.streamed: str | None = None  # text of the open text block so far
        self.begun: list[str] = []
        self.api_calls = 0
        self.output_tokens = 0
        self.input_tokens = 2500 + 50 * self.number
        self.denials: list[dict[str, Any]] = []
        self.in_tools = False  # between the tool_use blocks and the last tool result
        self.waiting: list[ToolCall] = []  # tool calls still waiting for a decision
        self.entry: dict[str, Any] = {}
        self.this_turn: dict[str, Any] = {}  # model_usage_since_last_result
        self.grandchild = 0

    # frames -------------------------------------------------------------------------

    def event(self, event: dict[str, Any], **extra: Any) -> None:
        if self.a.partial:
            frame: dict[str, Any] = {
                "type": "stream_event",
                "event": event,
                "session_id": self.a.session_id,
                "parent_tool_use_id": None,
                "uuid": new_uuid(),
            }
            abandoned = extra.pop("abandoned_blocks", None)
            frame.update(extra)
            frame["api_message_id"] = self.msg_id
            if abandoned is not None:
                frame["abandoned_blocks"] = abandoned
            self.a.emit(frame)

    def small_usage(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }

    def assistant(self, block: dict[str, Any], **extra: Any) -> None:
        message = {
            "id": self.msg_id,
            "type": "message",
            "role": "assistant",
            "model": self.a.model,
            "content": [block],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": self.small_usage(),
            "context_management": None,
        }
        self.a.emit(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": self.a.session_id,
                "uuid": new_uuid(),
                "timestamp": timestamp(),
                "request_id": self.request_id,
                **extra,
            }
        )

    def user(self, content: list[dict[str, Any]], **extra: Any) -> None:
        self.a.emit(
            {
                "type": "user",
                "message": {"role": "user", "content": content},
                "parent_tool_use_id": None,
                "session_id": self.a.session_id,
                "uuid": new_uuid(),
                "timestamp": timestamp(),
                **extra,
            }
        )

    def begin_message(self) -> None:
        self.msg_id = "msg_fake_" + os.urandom(10).hex()
        self.request_id = "req_fake_" + os.urandom(8).hex()
        self.block = -1
        self.api_calls += 1
        self.begun.append(self.msg_id)
        if self.a.partial:
            self.a.emit(
                {
                    "type": "system",
                    "subtype": "status",
                    "status": "requesting",
                    "session_id": self.a.session_id,
                    "uuid": new_uuid(),
                }
            )
        start = {
            "type": "message_start",
            "message": {
                "id": self.msg_id,
                "type": "message",
                "role": "assistant",
                "model": self.a.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self.small_usage(),
            },
        }
        self.event(start, ttft_ms=5, thinking_display="updates")

    def end_message(self, stop_reason: str) -> None:
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        self.event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": 9}})
        self.event({"type": "message_stop"})
        self.msg_id = None

    def start_block(self, block: dict[str, Any], **extra: Any) -> int:
        self.block += 1
        self.block_open = True
        self.event(
            {"type": "content_block_start", "index": self.block, "content_block": block}, **extra
        )
        return self.block

    def stop_block(self, index: int) -> None:
        self.block_open = False
        self.event({"type": "content_block_stop", "index": index})

    def thinking_block(self) -> None:
        thought = f"Let me think about turn {self.number}: {self.p.text}"
        signature = "fake-signature-" + os.urandom(4).hex()
        index = self.start_block(
            {"type": "thinking", "thinking": "", "signature": ""}, thinking_display="updates"
        )
        if self.a.partial:
            self.a.emit(
                {
                    "type": "system",
                    "subtype": "thinking_tokens",
                    "estimated_tokens": len(thought) // 4,
                    "estimated_tokens_delta": len(thought) // 4,
                    "session_id": self.a.session_id,
                    "uuid": new_uuid(),
                }
            )
        delta = {"type": "thinking_delta", "thinking": thought}
        self.event(
            {"type": "content_block_delta", "index": index, "delta": delta},
            thinking_display="updates",
        )
        sig = {"type": "signature_delta", "signature": signature}
        self.event({"type": "content_block_delta", "index": index, "delta": sig})
        block = {"type": "thinking", "thinking": thought, "signature": signature}
        self.assistant(block, thinking_duration_ms=1, thinking_display="updates")
        self.stop_block(index)
        self.a.pause(0)

    def ponder(self, seconds: float) -> None:
        """Long thinking, as the CLI streams it: a thinking delta now and then, and nothing
        else (no text, no tool) until it is done."""
        index = self.start_block(
            {"type": "thinking", "thinking": "", "signature": ""}, thinking_display="updates"
        )
        deadline, thought = time.monotonic() + seconds, ""
        while time.monotonic() < deadline:
            self.a.pause(0.2)
            thought += "hmm. "
            delta = {"type": "thinking_delta", "thinking": "hmm. "}
            self.event(
                {"type": "content_block_delta", "index": index, "delta": delta},
                thinking_display="updates",
            )
        block = {"type": "thinking", "thinking": thought, "signature": "fake-signature"}
        self.assistant(block, thinking_duration_ms=int(seconds * 1000), thinking_display="updates")
        self.stop_block(index)

    def text_block(self, text: str, chunks: list[str], interval: float) -> None:
        index = self.start_block({"type": "text", "text": ""})
        self.streamed = ""
        for chunk in chunks:
            self.a.pause(interval)
            delta = {"type": "text_delta", "text": chunk}
            self.event({"type": "content_block_delta", "index": index, "delta": delta})
            self.streamed += chunk
        self.output_tokens += max(1, len(text) // 4)
        self.assistant({"type": "text", "text": text})
        self.streamed = None
        self.stop_block(index)

    def flood(self) -> None:
        """[flood]: a text block that never ends, as fast as stdout takes its deltas,
        until the host interrupts the turn."""
        index = self.start_block({"type": "text", "text": ""})
        self.a.log.event("note", what="flooding until interrupted")
        self.a.flooding = True
        try:
            while True:
                self.a.pause(0)
                delta = {"type": "text_delta", "text": "flood "}
                self.event({"type": "content_block_delta", "index": index, "delta": delta})
        finally:
            self.a.flooding = False

    def tool_use_block(self, call: ToolCall) -> None:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        index = self.start_block(block)
        delta = {"type": "input_json_delta", "partial_json": dumps(call.input)}
        self.event({"type": "content_block_delta", "index": index, "delta": delta})
        self.assistant({"type": "tool_use", "id": call.id, "name": call.name, "input": call.input})
        self.stop_block(index)

    # the turn -----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a, p = self.a, self.p
        if p.has("stubborn"):
            a.stubborn = True  # read by the signal handler (only the main thread may set one)
            a.log.event("note", what="SIGTERM and SIGINT are ignored from now on")
        if p.has("hang-hard") or p.has("stubborn"):
            with a.cond:
                a.deaf = True  # before init, so no interrupt slips in
        a.lifecycle(p, "started")
        a.emit(a.init_frame())
        if a.replay:
            a.emit(
                {
                    "type": "user",
                    "message": p.message.get("message"),
                    "session_id": a.session_id,
                    "parent_tool_use_id": None,
                    "uuid": p.uuid or new_uuid(),
                    "timestamp": timestamp(),
                    "isReplay": True,
                }
            )
        self.entry = {"n": self.number, "prompt": p.text, "raw": p.raw, "status": "running"}
        a.conv["turns"].append(self.entry)
        if not a.saved:  # like the CLI's transcript: a session exists once a turn started
            a.save()
        try:
            return self.body()
        except Interrupted:
            return self.interrupted()

    def body(self) -> dict[str, Any]:
        a, p = self.a, self.p
        if p.has("stderr"):
            size = int(p.number("stderr", 1000))
            noise = (b"fake_agent: some noise on stderr\n" * (size // 33 + 1))[:size]
            write_all(2, noise)
        if p.has("crash") or (p.has("crash-once") and p.raw not in a.conv["crashed_prompts"]):
            self.crash()
        if p.has("grandchild"):
            self.spawn_grandchild()
        if p.has("hang-hard") or p.has("stubborn"):
            with a.cond:
                while True:
                    a.cond.wait(3600)
        if p.has("hang"):
            a.pause(float("inf"))
        if p.has("api-error"):
            return self.api_error()
        self.begin_message()
        if p.has("flood"):
            self.flood()
        if p.has("think"):
            self.thinking_block()
        if p.has("ponder"):
            self.ponder(p.number("ponder", 1))
        calls = self.tool_calls()
        if calls:
            intro = (
                "I will run a command." if len(calls) == 1 else f"I will run {len(calls)} tools."
            )
            self.text_block(intro, [intro], 0)
            for call in calls:
                self.tool_use_block(call)
            self.end_message("tool_use")
            self.run_tools(calls)
            self.begin_message()
            answer = "\n".join(call.outcome for call in calls)
        elif p.has("text2"):
            self.stream_answer(self.echo())
            call = ToolCall("Bash", {"command": "echo text2", "description": "Print a marker"}, "")
            self.tool_use_block(call)
            self.end_message("tool_use")
            self.tool_ran(
                call,
                call.input,
                {"decision": "accept", "source": "config", "reason_type": "subcommandResults"},
            )
            self.begin_message()
            answer = "second block, after the tool"
        else:
            answer = self.answer_text()
        answer = self.stream_answer(answer)
        self.end_message("end_turn")
        return self.success(answer)

    def answer_text(self) -> str:
        p = self.p
        if p.has("whoami"):
            values = self.a.opts["values"]
            info = {
                "pid": os.getpid(),
                "session_id": self.a.session_id,
                "resumed": self.a.resumed,
                "model": self.a.model,
                "permission_mode": self.a.mode,
                "cwd": self.a.cwd,
                "append_system_prompt": values.get("--append-system-prompt"),
                "system_prompt": values.get("--system-prompt"),
                "unknown_args": self.a.opts["unknown"],
            }
            return "whoami " + dumps(info)
        if p.has("env"):
            name = p.arg("env")
            return f"env {name}={os.environ.get(name, '(unset)')}"
        if p.has("long"):
            return long_text(self.echo(), int(p.number("long", 1000)))
        if p.has("fence"):
            return fence_text(self.echo(), int(p.number("fence", 1000)))
        if p.has("grandchild"):
            return f"{self.echo()} grandchild pid {self.grandchild}"
        return self.echo()

    def echo(self) -> str:
        images = ""
        if self.p.images:
            images = f" (with {len(self.p.images)} image(s): {', '.join(self.p.images)})"
        return f"echo #{self.number}: {self.p.text}{images} (earlier: {quote_list(self.earlier)})"

    def stream_answer(self, text: str) -> str:
        """Stream `text` as one text block the way the directives ask; returns the block's
        text ([deltas N] pads a short answer with dots so that there are N deltas)."""
        p = self.p
        if p.has("deltas"):
            count = max(1, int(p.number("deltas", 1)))
            text += "." * max(0, count - len(text))
            chunks = split_even(text, count)
        else:
            chunks = [text[i : i + 12] for i in range(0, len(text), 12)]
        seconds = max(0.0, p.number("slow", 0.0)) if p.has("slow") else 0.0
        if seconds and not p.has("deltas") and 0 < len(chunks) < 10:
            chunks = split_even(text, 10)
        self.text_block(text, chunks, seconds / len(chunks) if chunks and seconds else 0.0)
        return text

    # tools --------------------------------------------------------------------------

    def tool_calls(self) -> list[ToolCall]:
        calls: list[ToolCall] = []
        for name, value in self.p.directives:
            if name == "tool":
                calls.append(
                    ToolCall(
                        "Bash",
                        {"command": value, "description": "Run a scripted command"},
                        "Run a scripted command",
                    )
                )
            elif name == "write":
                content = "hello from fake agent\n"
                calls.append(
                    ToolCall(
                        "Write",
                        {"file_path": value, "content": content},
                        os.path.basename(value) or value,
                    )
                )
            elif name == "tools":
                for k in range(1, int(self.p.number("tools", 1)) + 1):
                    command = f"touch tools-{k}.txt"
                    calls.append(
                        ToolCall(
                            "Bash", {"command": command, "description": f"Step {k}"}, f"Step {k}"
                        )
                    )
        return calls

    def policy(self, call: ToolCall) -> tuple[str, str]:
        """('allow', reason) | ('deny', message) | ('ask', '') for one tool call."""
        a = self.a
        for rule in [*a.conv["rules"], *a.session_rules]:
            if rule_matches(rule, call):
                return "allow", "rule"
        if a.mode == "bypassPermissions" or (a.mode == "acceptEdits" and call.name == "Write"):
            return "allow", "mode"
        if a.prompt_tool != "stdio" or a.mode == "dontAsk":
            return "deny", f"{call.name} needs approval and there is no one to ask."
        return "ask", ""

    def run_tools(self, calls: list[ToolCall]) -> None:
        a = self.a
        self.in_tools = True
        asks: list[ToolCall] = []
        for call in calls:
            verdict, why = self.policy(call)
            if verdict == "allow":
                decision = {"decision": "accept", "source": "config", "reason_type": why}
                self.tool_ran(call, call.input, decision)
            elif verdict == "deny":
                a.emit(
                    {
                        "type": "system",
                        "subtype": "permission_denied",
                        "tool_name": call.name,
                        "tool_use_id": call.id,
                        "message": why,
                        "uuid": new_uuid(),
                        "session_id": a.session_id,
                    }
                )
                self.tool_denied(
                    call, why, "user-rejected", {"decision": "reject", "source": "config"}
                )
            else:
                asks.append(call)
        with a.cond:
            for call in asks:
                call.request_id = new_uuid()
                a.pending[call.request_id] = call
                if a.eof:
                    call.answer = NO_ANSWER_AFTER_EOF
                a.emit(
                    {
                        "type": "control_request",
                        "request_id": call.request_id,
                        "request": self.can_use_tool(call),
                    }
                )
        self.waiting = list(asks)
        stop = False
        while self.waiting:
            with a.cond:
                while not a.interrupted and all(c.answer is None for c in self.waiting):
                    a.cond.wait()
                ready = [c for c in self.waiting if c.answer is not None]
                for call in ready:
                    a.pending.pop(call.request_id, None)
                    self.waiting.remove(call)
                    stop = self.decide(call) or stop
                if self.waiting and (a.interrupted or stop):
                    for call in self.waiting:
                        if not call.cancelled:
                            call.cancelled = True
                            a.emit(
                                {"type": "control_cancel_request", "request_id": call.request_id}
                            )
                    raise Interrupted
        if stop:
            raise Interrupted
        self.in_tools = False

    def can_use_tool(self, call: ToolCall) -> dict[str, Any]:
        if call.name == "Bash":
            first = call.command().split()[0] if call.command().split() else call.command()
            suggestions: list[dict[str, Any]] = [
                {
                    "type": "addRules",
                    "rules": [{"toolName": "Bash", "ruleContent": f"{first}:*"}],
                    "behavior": "allow",
                    "destination": "localSettings",
                }
            ]
        else:
            suggestions = [{"type": "setMode", "mode": "acceptEdits", "destination": "session"}]
        return {
            "subtype": "can_use_tool",
            "tool_name": call.name,
            "display_name": call.name,
            "input": call.input,
            "description": call.description,
            "permission_suggestions": suggestions,
            "tool_use_id": call.id,
        }

    def decide(self, call: ToolCall) -> bool:
        """Apply the host's answer to one can_use_tool; True if it also stops the turn."""
        answer = call.answer or {}
        body = answer.get("response") if answer.get("subtype") == "success" else None
        if not isinstance(body, dict):
            message = f"Tool permission request failed: {answer.get('error', 'no answer')}"
            self.tool_denied(
                call, message, "permission-rule", {"decision": "reject", "source": "user_reject"}
            )
            return False
        if body.get("behavior") == "allow":
            updated = body.get("updatedInput")
            tool_input = updated if isinstance(updated, dict) else call.input
            self.apply_updates(body.get("updatedPermissions") or [])
            self.tool_ran(call, tool_input, {"decision": "accept", "source": "user_temporary"})
            return False
        message = str(body.get("message") or "Permission denied")
        self.tool_denied(
            call, message, "permission-rule", {"decision": "reject", "source": "user_reject"}
        )
        return bool(body.get("interrupt"))

    def apply_updates(self, updates: list[Any]) -> None:
        a = self.a
        changed = False
        for update in updates:
            if not isinstance(update, dict):
                continue
            if (
                update.get("type") == "addRules"
                and update.get("behavior", "allow") == "allow"
                and update.get("destination") == "session"
            ):
                a.session_rules += [r for r in update.get("rules") or [] if isinstance(r, dict)]
            elif update.get("type") == "addRules" and update.get("behavior", "allow") == "allow":
                for rule in update.get("rules") or []:
                    if isinstance(rule, dict) and rule not in a.conv["rules"]:
                        a.conv["rules"].append(
                            {
                                "toolName": rule.get("toolName"),
                                "ruleContent": rule.get("ruleContent"),
                            }
                        )
                        changed = True
            elif update.get("type") == "setMode" and update.get("mode") in PERMISSION_MODES:
                a.mode = update["mode"]
        if changed:
            a.save()

    def tool_ran(
        self, call: ToolCall, tool_input: dict[str, Any], decision: dict[str, Any]
    ) -> None:
        meta = [{"id": call.id, "permission_decision": decision}]
        result: dict[str, Any]
        block: dict[str, Any]
        if call.name == "Write":
            path = str(tool_input.get("file_path", ""))
            content = f"File created successfully at: {path}"
            result = {
                "type": "create",
                "filePath": path,
                "content": tool_input.get("content", ""),
                "structuredPatch": [],
                "originalFile": None,
                "userModified": False,
            }
            block = {"tool_use_id": call.id, "type": "tool_result", "content": content}
            call.outcome = f"tool ran: Write {path}"
        else:
            command = str(tool_input.get("command", ""))
            content = f"ran: {command}"
            result = {
                "stdout": content,
                "stderr": "",
                "interrupted": False,
                "isImage": False,
                "noOutputExpected": False,
            }
            block = {
                "tool_use_id": call.id,
                "type": "tool_result",
                "content": content,
                "is_error": False,
            }
            call.outcome = f"tool ran: {command}"
        self.user([block], tool_use_result=result, tool_result_meta=meta)

    def tool_denied(
        self, call: ToolCall, message: str, kind: str, decision: dict[str, Any]
    ) -> None:
        block = {
            "type": "tool_result",
            "content": message,
            "is_error": True,
            "tool_use_id": call.id,
        }
        meta = [{"id": call.id, "non_execution_kind": kind, "permission_decision": decision}]
        self.user([block], tool_use_result=f"Error: {message}", tool_result_meta=meta)
        self.denials.append(
            {"tool_name": call.name, "tool_use_id": call.id, "tool_input": call.input}
        )
        call.outcome = f"tool denied: {message}"

    # the other endings --------------------------------------------------------------

    def crash(self) -> None:
        a = self.a
        if self.p.has("crash-once"):
            a.conv["crashed_prompts"].append(self.p.raw)
        self.entry["status"] = "crashed"
        a.save()
        self.begin_message()
        index = self.start_block({"type": "text", "text": ""})
        delta = {"type": "text_delta", "text": f"echo #{self.number}: "}
        self.event({"type": "content_block_delta", "index": index, "delta": delta})
        sys.stderr.write("fake_agent: simulated crash in the middle of a turn\n")
        sys.stderr.flush()
        a.exit(1, "crash")

    def spawn_grandchild(self) -> None:
        import subprocess

        child = subprocess.Popen(
            [sys.executable, "-I", "-c", "import time; time.sleep(3600)"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.grandchild = child.pid
        self.a.log.event("child", pid=child.pid)

    def api_error(self) -> dict[str, Any]:
        a = self.a
        text = (
            'API Error: 500 {"type":"error","error":{"type":"api_error",'
            '"message":"Internal server error (scripted by fake_agent)"}}'
        )
        message = {
            "diagnostics": None,
            "id": new_uuid(),
            "container": None,
            "model": "<synthetic>",
            "role": "assistant",
            "stop_details": None,
            "stop_reason": "stop_sequence",
            "stop_sequence": "",
            "type": "message",
            "usage": {
                "output_tokens_details": None,
                "input_tokens": 0,
                "output_tokens": 0,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
                "service_tier": None,
                "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
                "inference_geo": None,
                "iterations": None,
                "speed": None,
                "fallback_credit": None,
            },
            "content": [{"type": "text", "text": text}],
            "context_management": None,
        }
        a.emit(
            {
                "type": "assistant",
                "message": message,
                "parent_tool_use_id": None,
                "session_id": a.session_id,
                "uuid": new_uuid(),
                "timestamp": timestamp(),
                "error": "unknown",
                "request_id": "req_fake_" + os.urandom(8).hex(),
                "is_api_error_message": True,
                "api_error_status": 500,
                "api_error_type": "api_error",
            }
        )
        self.api_calls = 1
        r = self.result_head("success", True, "stop_sequence", "api_error", cost=0.0)
        r.update(api_error_status=500, api_error_type="api_error", result=text)
        return self.result_tail(r, "api_error", text, timings=False)

    def interrupted(self) -> dict[str, Any]:
        a = self.a
        if self.waiting:  # the host never decided: those tool calls count as refused
            with a.cond:
                for call in self.waiting:
                    a.pending.pop(call.request_id, None)
            for call in self.waiting:
                block = {
                    "type": "tool_result",
                    "content": REJECTED_TOOL_TEXT,
                    "is_error": True,
                    "tool_use_id": call.id,
                }
                meta = [{"id": call.id, "non_execution_kind": "user-rejected"}]
                self.user([block], tool_use_result="User rejected tool use", tool_result_meta=meta)
                self.denials.append(
                    {"tool_name": call.name, "tool_use_id": call.id, "tool_input": call.input}
                )
        if self.in_tools:
            self.user([{"type": "text", "text": "[Request interrupted by user for tool use]"}])
            stop_reason, terminal = "tool_use", "aborted_tools"
        else:
            if self.streamed:
                self.assistant({"type": "text", "text": self.streamed}, aborted=True)
            self.user([{"type": "text", "text": "[Request interrupted by user]"}])
            if self.msg_id is not None:
                if self.block_open:
                    self.stop_block(self.block)
                self.abandon_message()
            stop_reason, terminal = None, "aborted_streaming"
        r = self.result_head("error_during_execution", True, stop_reason, terminal)
        r["errors"] = [
            "[ede_diagnostic] result_type=user last_content_type=n/a"
            f" stop_reason={stop_reason or 'null'}"
        ]
        return self.result_tail(r, "interrupted", None, timings=False)

    def abandon_message(self) -> None:
        delta = {
            "container": None,
            "stop_details": None,
            "stop_reason": None,
            "stop_sequence": None,
        }
        usage = {
            "output_tokens_details": {"thinking_tokens": 0},
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "input_tokens": self.input_tokens,
            "iterations": [],
            "output_tokens": 1,
            "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
            "fallback_credit": None,
        }
        event = {
            "type": "message_delta",
            "context_management": None,
            "delta": delta,
            "usage": usage,
        }
        self.event(event)
        abandoned = {"api_message_id": self.msg_id, "from_block_index": self.block + 1}
        self.event({"type": "message_stop"}, abandoned_blocks=abandoned)
        self.msg_id = None

    def success(self, text: str) -> dict[str, Any]:
        r = self.result_head("success", False, "end_turn", "completed")
        r.update(api_error_status=None, result=text, ttft_ms=5)
        return self.result_tail(r, "success", text, timings=True)

    # result -------------------------------------------------------------------------

    def result_head(
        self,
        subtype: str,
        is_error: bool,
        stop_reason: str | None,
        terminal: str,
        cost: float = COST_PER_TURN,
    ) -> dict[str, Any]:
        a = self.a
        model = a.model
        a.conv["total_cost_usd"] = round(a.conv["total_cost_usd"] + cost, 10)
        totals = a.conv["model_usage"].setdefault(model, {"in": 0, "out": 0, "cost": 0.0})
        spent_in = self.input_tokens if cost else 0
        out = max(1, self.output_tokens) if cost else 0
        totals["in"] += spent_in
        totals["out"] += out
        totals["cost"] = round(totals["cost"] + cost, 10)
        self.this_turn = model_usage(model, spent_in, out, cost)
        return {
            "duration_api_ms": int((time.monotonic() - self.started) * 1000),
            "stop_reason": stop_reason,
            "session_id": a.session_id,
            "total_cost_usd": a.conv["total_cost_usd"],
            "usage": usage_block(spent_in, out),
            "modelUsage": {
                name: model_usage(name, t["in"], t["out"], t["cost"])[name]
                for name, t in a.conv["model_usage"].items()
            },
            "permission_denials": self.denials,
            "terminal_reason": terminal,
            "fast_mode_state": "off",
            "fast_mode_disabled_reason": "sdk_opt_in_required",
            "subagent_stats": SUBAGENT_STATS,
            "safety_stops": 0,
            "is_error": is_error,
            "num_turns": max(1, self.api_calls),
            "subtype": subtype,
        }

    def result_tail(
        self, r: dict[str, Any], status: str, answer: str | None, timings: bool
    ) -> dict[str, Any]:
        a = self.a
        r["type"] = "result"
        r["duration_ms"] = int((time.monotonic() - self.started) * 1000)
        r["uuid"] = new_uuid()
        if a.partial and self.begun:
            r["begun_message_ids"] = self.begun
        if timings:
            r.update(ttft_stream_ms=4, time_to_request_ms=2, first_content_frame_ms=4)
        r["queued_turn_count"] = 0
        r["result_index"] = a.results
        r["model_usage_since_last_result"] = self.this_turn
        self.entry.update(status=status, answer=answer)
        a.save()
        return r


def usage_block(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
        "output_tokens_details": {"thinking_tokens": 0},
        "server_tool_use": {"web_search_requests": 0, "web_fetch_requests": 0},
        "service_tier": "standard",
        "cache_creation": {"ephemeral_1h_input_tokens": 0, "ephemeral_5m_input_tokens": 0},
        "inference_geo": "",
        "iterations": [],
        "speed": "standard",
        "fallback_credit": None,
    }


def model_usage(model: str, input_tokens: int, output_tokens: int, cost: float) -> dict[str, Any]:
    return {
        model: {
            "inputTokens": input_tokens,
            "outputTokens": output_tokens,
            "cacheReadInputTokens": 0,
            "cacheCreationInputTokens": 0,
            "webSearchRequests": 0,
            "costUSD": cost,
            "contextWindow": 1000000,
            "maxOutputTokens": 128000,
            "thinkingTokens": 0,
            "cacheCreationEphemeral5mInputTokens": 0,
            "cacheCreationEphemeral1hInputTokens": 0,
            "canonicalModel": model,
            "provider": "firstParty",
            "costBasis": "list",
        }
    }


def parse_rules(text: str) -> list[dict[str, Any]]:
    """`--allowedTools` as the CLI reads it: rules split at commas and spaces outside
    parentheses, each `Tool` or `Tool(content)`."""
    rules: list[str] = []
    depth, current = 0, ""
    for char in text:
        if char in ", " and depth == 0:
            rules.append(current)
            current = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current += char
    rules.append(current)
    parsed = []
    for rule in filter(None, rules):
        name, _, content = rule.partition("(")
        parsed.append({"toolName": name, "ruleContent": content[:-1] if content.endswith(")") else None})
    return parsed


def rule_matches(rule: dict[str, Any], call: ToolCall) -> bool:
    """Claude Code's rule syntax, as far as the fake needs it: `Tool` alone, `cmd:*` (the
    command starts with the word `cmd`), or the exact command / path."""
    if rule.get("toolName") != call.name:
        return False
    content = rule.get("ruleContent")
    if not content:
        return True
    target = call.command() if call.name == "Bash" else str(call.input.get("file_path", ""))
    if content.endswith(":*"):
        prefix = content[:-2]
        return target == prefix or target.startswith(prefix + " ")
    return bool(target == content)


# --- main ------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    if "--version" in argv or "-v" in argv:
        sys.stdout.write(f"{VERSION} (Claude Code)\n")
        return 0
    log = Log()
    try:
        opts = parse_args(argv)
    except Usage as exc:
        sys.stderr.write(f"{exc}\n")
        log.event("exit", code=1, why=str(exc))
        return 1
    values = opts["values"]
    try:
        if values.get("--output-format") == "stream-json" and "--verbose" not in opts["flags"]:
            raise Usage("Error: When using --print, --output-format=stream-json requires --verbose")
        if (
            values.get("--output-format") != "stream-json"
            or values.get("--input-format") != "stream-json"
        ):
            raise Usage("fake_agent: only --input-format stream-json --output-format stream-json")
        agent = Agent(opts, log, os.getcwd())
    except Usage as exc:
        sys.stderr.write(f"{exc}\n")
        log.event(
            "start",
            pid=os.getpid(),
            pgid=os.getpgid(0),
            argv=sys.argv,
            cwd=os.getcwd(),
            session_id=None,
            resumed=False,
        )
        log.event("exit", code=1, why=str(exc))
        return 1

    def on_signal(signum: int, _frame: Any) -> None:
        log.event("signal", signum=signum, ignored=agent.stubborn)
        if agent.stubborn:
            return
        log.event("exit", code=128 + signum, why="signal")
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.event(
        "start",
        pid=os.getpid(),
        pgid=os.getpgid(0),
        argv=sys.argv,
        cwd=agent.cwd,
        session_id=agent.session_id,
        resumed=agent.resumed,
        model=agent.model,
        permission_mode=agent.mode,
        unknown_args=opts["unknown"],
    )
    if agent.model == "crash-at-start":  # for restart-policy tests: a CLI that cannot start
        print("fake_agent: crashing at start as asked", file=sys.stderr, flush=True)
        log.event("exit", code=1, why="crash-at-start")
        return 1
    slow_start = float(os.environ.get("FAKE_AGENT_SLOW_START") or 0)
    if slow_start > 0:
        time.sleep(slow_start)
    outcome: list[int] = []

    def work() -> None:
        try:
            outcome.append(agent.run_turns())
        except BaseException:  # a bug in the fake: say so loudly instead of hanging
            traceback.print_exc()
            agent.exit(70, "fake_agent bug")

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    agent.read_stdin()
    while worker.is_alive():
        worker.join(1.0)
    code = outcome[0] if outcome else 1
    agent.exit(code, "stdin closed")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
