#!/usr/bin/env python3
"""A stand-in for `opencode acp` (OpenCode 1.18.33) that speaks the Agent Client Protocol.

Tests launch it as the agent command (`[sys.executable, "tests/fakes/fake_acp_agent.py",
"acp"]`). Frame names, key order, nesting and frame order are copied from the real
captures in ../shared/reference/opencode-acp/transcripts (tests/test_acp_fake_agent.py
compares them); the long lists (config options, commands) are shortened. Standard
library only.

Startup faults (`$FAKE_ACP_FAULT`): `no-initialize` (reads, never answers initialize),
`version=N` (answers initialize with protocolVersion N), `open-fails` (session/resume
and session/load fail like an unknown id, even for a stored conversation), `open-fails-once`
(so does the first try of each stored conversation, across processes), `load-only` (offers
session/load but not session/resume), `exit-at-start` (exit 3 before reading).

The "model": bracketed directives in a prompt; the capture recorder's words work too:
  [tool CMD] / RUN_BASH: CMD   a Bash call that asks session/request_permission, then runs
  [slow S] / SLOW              stream the answer over S seconds (SLOW: 20 s)
  [think] / THINK              a thought part before the answer
  [fail] / API_ERROR           the provider fails: -32603 like OpenCode's APIError
  [crash]                      exit 1 after one chunk, with no response
  [hang]                       nothing after the first chunk until session/cancel
  [hang-hard]                  nothing at all, session/cancel ignored
  [garbage]                    a non-JSON line on stdout, then the normal answer
  [plan]                       two `plan` updates (the second: a step done) before the answer
  [stop REASON]                end the turn with that stopReason (max_tokens, refusal...)
  [withdraw S]                 with [tool]: unanswered after S seconds, the permission request
                               is withdrawn (`$/cancel_request`); the client's answer is awaited
Otherwise: `Echo #N: <prompt> (first prompt in this conversation: '<first>')`, streamed in
12-character chunks, like the captures' fake model.

Conversations live in `$XDG_DATA_HOME/fake-acp/<session id>.json` (prompts and answers),
so session/resume and session/load work across processes. "Always allow" rules live only
as long as the process (as in OpenCode). Threads: the main thread reads stdin; one worker
runs the turns; stdout lines are written whole under one lock.
"""

from __future__ import annotations

import json
import os
import random
import re
import string
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

VERSION = "1.18.33"
CHUNK = 12
OPTIONS = [
    {"optionId": "once", "kind": "allow_once", "name": "Allow once"},
    {"optionId": "always", "kind": "allow_always", "name": "Always allow"},
    {"optionId": "reject", "kind": "reject_once", "name": "Reject"},
]
REJECTED = "The user rejected permission to use this specific tool call."
ABORTED = "Tool execution aborted"
COMMANDS = [
    {"name": "init", "description": "guided AGENTS.md setup"},
    {"name": "review", "description": "review changes [commit|branch|pr], defaults to uncommitted"},
]
_DIRECTIVE = re.compile(
    r"\[(tool|slow|think|fail|crash|hang-hard|hang|garbage|plan|stop|withdraw)(?:\s+([^\]]*))?\]"
)


def _id(prefix: str) -> str:
    """OpenCode's ids: a prefix and 26 characters (`ses_…`, `msg_…`, `prt_…`)."""
    alphabet = string.ascii_letters + string.digits
    return prefix + "".join(random.choice(alphabet) for _ in range(26))


def config_options(model: str = "anthropic/claude-sonnet-4-5") -> list[dict[str, Any]]:
    return [
        {
            "id": "model",
            "name": "Model",
            "category": "model",
            "type": "select",
            "currentValue": model,
            "options": [{"value": model, "name": "Anthropic/Claude Sonnet 4.5"}],
        },
        {
            "id": "mode",
            "name": "Session Mode",
            "category": "mode",
            "type": "select",
            "currentValue": "build",
            "options": [{"value": "build", "name": "build"}, {"value": "plan", "name": "plan"}],
        },
    ]


class Cancelled(Exception):
    pass


class Agent:
    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.out_lock = threading.Lock()
        self.cond = threading.Condition()
        self.next_request_id = 0  # OpenCode numbers its own requests from 0
        self.answers: dict[Any, dict[str, Any]] = {}  # our request id -> result
        self.cancelled: set[str] = set()
        self.turns: list[tuple[Any, str, list[dict[str, Any]]]] = []  # (id, session, prompt)
        self.rules: list[str] = []  # "always" prefixes, for this process only
        self.store = (
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local/share") / "fake-acp"
        )
        self.sessions: dict[str, dict[str, Any]] = {}
        self.eof = False

    # --- output ------------------------------------------------------------------

    def write(self, frame: dict[str, Any]) -> None:
        line = json.dumps({"jsonrpc": "2.0", **frame}, separators=(",", ":"))
        with self.out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def raw(self, text: str) -> None:
        with self.out_lock:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

    def result(self, rid: Any, result: dict[str, Any]) -> None:
        self.write({"id": rid, "result": result})

    def error(self, rid: Any, code: int, message: str, data: Any) -> None:
        self.write({"id": rid, "error": {"code": code, "message": message, "data": data}})

    def update(self, sid: str, update: dict[str, Any]) -> None:
        self.write({"method": "session/update", "params": {"sessionId": sid, "update": update}})

    def commands_later(self, sid: str) -> None:
        # OpenCode sends these asynchronously after the session answer (sometimes after
        # the client's next request has been answered); right after it is one such order.
        self.update(
            sid, {"sessionUpdate": "available_commands_update", "availableCommands": COMMANDS}
        )

    # --- sessions ----------------------------------------------------------------

    def load(self, sid: str) -> dict[str, Any] | None:
        if sid in self.sessions:
            return self.sessions[sid]
        try:
            data: dict[str, Any] = json.loads((self.store / f"{sid}.json").read_text())
        except (OSError, ValueError):
            return None
        self.sessions[sid] = data
        return data

    def listing(self, cwd: Any) -> list[dict[str, Any]]:
        found = []
        for path in sorted(self.store.glob("ses_*.json")):
            data = json.loads(path.read_text())
            if cwd in (None, data.get("cwd")):
                history = data.get("history") or [["New session", ""]]
                updated = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(path.stat().st_mtime))
                found.append(
                    {
                        "sessionId": path.stem,
                        "cwd": data.get("cwd"),
                        "title": history[0][0][:80],
                        "updatedAt": updated,
                    }
                )
        return found

    def save(self, sid: str) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        tmp = self.store / f"{sid}.json.tmp"
        tmp.write_text(json.dumps(self.sessions[sid]))
        tmp.replace(self.store / f"{sid}.json")

    # --- input -------------------------------------------------------------------

    def handle(self, line: str) -> None:
        try:
            frame = json.loads(line)
        except ValueError:
            print(f"Failed to parse JSON message: {line[:100]}", file=sys.stderr, flush=True)
            return
        method, rid, params = frame.get("method"), frame.get("id"), frame.get("params") or {}
        if method is None:
            with self.cond:
                self.answers[rid] = frame.get("result") or {}
                self.cond.notify_all()
            return
        if method == "initialize":
            self.initialize(rid, params)
        elif method == "session/new":
            sid = _id("ses_")
            self.sessions[sid] = {"cwd": params.get("cwd", ""), "history": []}
            self.save(sid)
            self.result(rid, {"sessionId": sid, "configOptions": config_options()})
            self.commands_later(sid)
        elif method in ("session/resume", "session/load"):
            self.open(rid, method, params)
        elif method == "session/prompt":
            sid = params.get("sessionId")
            if not isinstance(params.get("prompt"), list) or not isinstance(sid, str):
                self.error(rid, -32602, "Invalid params", {"_errors": []})
            elif self.load(sid) is None:
                self.error(
                    rid, -32602, f"Invalid params: session not found: {sid}", {"sessionId": sid}
                )
            else:
                with self.cond:
                    self.cancelled.discard(sid)  # a cancel stops the turns before it only
                    self.turns.append((rid, sid, params["prompt"]))
                    self.cond.notify_all()
        elif method == "session/list":
            self.result(rid, {"sessions": self.listing(params.get("cwd"))})
        elif method == "session/close":
            self.sessions.pop(str(params.get("sessionId")), None)
            self.result(rid, {})
        elif method == "session/cancel":
            with self.cond:
                self.cancelled.add(str(params.get("sessionId")))
                self.cond.notify_all()
        elif rid is not None:
            self.error(rid, -32601, f'"Method not found": {method}', {"method": method})

    def initialize(self, rid: Any, params: dict[str, Any]) -> None:
        if self.fault == "no-initialize":
            return
        version = int(self.fault.split("=")[1]) if self.fault.startswith("version=") else 1
        session_caps: dict[str, Any] = {"close": {}, "fork": {}, "list": {}, "resume": {}}
        if self.fault == "load-only":
            session_caps = {"close": {}, "list": {}}
        self.result(
            rid,
            {
                "protocolVersion": version,
                "agentCapabilities": {
                    "loadSession": True,
                    "mcpCapabilities": {"http": True, "sse": True},
                    "promptCapabilities": {"embeddedContext": True, "image": True},
                    "sessionCapabilities": session_caps,
                },
                "authMethods": [
                    {
                        "description": "Run `opencode auth login` in the terminal",
                        "name": "Login with opencode",
                        "id": "opencode-login",
                    }
                ],
                "agentInfo": {"name": "OpenCode", "version": VERSION},
            },
        )

    def open(self, rid: Any, method: str, params: dict[str, Any]) -> None:
        sid = str(params.get("sessionId"))
        session = self.load(sid)
        refused = self.fault == "open-fails" or (method == "session/resume" and self.fault == "load-only")
        if session is not None and self.fault == "open-fails-once":
            tried = self.store / f"{sid}.tried"
            refused = not tried.exists()
            tried.touch()
        if session is None or refused:
            self.error(
                rid, -32603, "Internal error: OpenCode service failure", {"service": "session"}
            )
            return
        if method == "session/load":
            for prompt, answer in session["history"]:
                for kind, text in (("user_message_chunk", prompt), ("agent_message_chunk", answer)):
                    content = {"type": "text", "text": text}
                    self.update(
                        sid, {"sessionUpdate": kind, "messageId": _id("msg_"), "content": content}
                    )
        self.result(rid, {"configOptions": config_options()})
        self.commands_later(sid)

    # --- turns -------------------------------------------------------------------

    def worker(self) -> None:
        while True:
            with self.cond:
                while not self.turns and not self.eof:
                    self.cond.wait()
                if not self.turns:
                    return
                rid, sid, prompt = self.turns.pop(0)
            self.turn(rid, sid, prompt)

    def check(self, sid: str) -> None:
        with self.cond:
            if self.eof:
                os._exit(0)  # stdin closed mid-turn: OpenCode exits, the prompt unanswered
            if sid in self.cancelled:
                raise Cancelled

    def sleep(self, sid: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.check(sid)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            with self.cond:
                self.cond.wait(min(left, 0.05))

    def turn(self, rid: Any, sid: str, prompt: list[dict[str, Any]]) -> None:
        text = "\n".join(b.get("text", "") for b in prompt if b.get("type") == "text").strip()
        session = self.sessions[sid]
        try:
            answer = self.play(sid, text, session)
        except Cancelled:
            self.update(
                sid,
                {
                    "sessionUpdate": "usage_update",
                    "used": 0,
                    "size": 1000000,
                    "cost": {"amount": 0, "currency": "USD"},
                },
            )
            usage = {"inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
            self.result(rid, {"stopReason": "cancelled", "usage": usage, "_meta": {}})
            return
        except RuntimeError as exc:  # the provider failed
            self.update(
                sid,
                {
                    "sessionUpdate": "usage_update",
                    "used": 0,
                    "size": 1000000,
                    "cost": {"amount": 0, "currency": "USD"},
                },
            )
            self.error(
                rid,
                -32603,
                f"Internal error: {exc}",
                {"service": "session", "errorName": "APIError"},
            )
            return
        session["history"].append([text, answer[1]])
        session["cost"] = round(session.get("cost", 0.0) + 0.0002, 6)
        self.save(sid)
        used = 28 + 35 * len(session["history"])
        cost = {"amount": session["cost"], "currency": "USD"}
        self.update(
            sid, {"sessionUpdate": "usage_update", "used": used, "size": 1000000, "cost": cost}
        )
        usage = {"inputTokens": used, "outputTokens": 6, "totalTokens": used + 6}
        self.result(rid, {"stopReason": answer[0], "usage": usage, "_meta": {}})

    def play(self, sid: str, text: str, session: dict[str, Any]) -> tuple[str, str]:
        """Run the scripted turn; (stopReason, answer text)."""
        directives = [(m.group(1), (m.group(2) or "").strip()) for m in _DIRECTIVE.finditer(text)]
        if text.startswith("RUN_BASH:"):
            directives.append(("tool", text.split(":", 1)[1].strip()))
        words = {"SLOW": ("slow", "20"), "THINK": ("think", ""), "API_ERROR": ("fail", "")}
        directives += [d for w, d in words.items() if text.startswith(w)]
        names = dict(directives)
        first = session["history"][0][0] if session["history"] else text
        answer = f"Echo #{len(session['history']) + 1}: {text} (first prompt in this conversation: '{first}')"
        if "fail" in names:
            raise RuntimeError("scripted failure for testing")
        if "think" in names:
            part = _id("prt_")
            for piece in ("Let me think about this briefly.", ""):
                self.update(
                    sid,
                    {
                        "sessionUpdate": "agent_thought_chunk",
                        "messageId": part,
                        "content": {"type": "text", "text": piece},
                    },
                )
        if "plan" in names:  # the whole plan in each update, as ACP sends it
            for statuses in (("in_progress", "pending"), ("completed", "in_progress")):
                entries = [
                    {"content": "Look around", "status": statuses[0], "priority": "high"},
                    {"content": "Answer", "status": statuses[1], "priority": "medium"},
                ]
                self.update(sid, {"sessionUpdate": "plan", "entries": entries})
        if "garbage" in names:
            self.raw("this is not json {")
        for name, arg in directives:
            if name == "tool":
                self.stream(sid, "I will run a command.", 0)
                withdraw = float(names["withdraw"]) if "withdraw" in names else None
                result = self.tool(sid, arg, session["cwd"], withdraw)
                if result is None:
                    return "end_turn", "I will run a command."
                answer = f"Tool finished. Result was: {result.strip()}"
        slow = float(names.get("slow") or 0) if "slow" in names else 0.0
        if "crash" in names:
            self.stream(sid, answer[:CHUNK], 0)
            os._exit(1)
        if "hang-hard" in names:
            while True:
                time.sleep(1)
        if "hang" in names:
            self.stream(sid, answer[:CHUNK], 0)
            while True:
                self.sleep(sid, 0.1)
        self.stream(sid, answer, slow)
        return names.get("stop") or "end_turn", answer

    def stream(self, sid: str, text: str, seconds: float) -> None:
        message = _id("msg_")
        pieces = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        for piece in pieces:
            self.check(sid)
            self.update(
                sid,
                {
                    "sessionUpdate": "agent_message_chunk",
                    "messageId": message,
                    "content": {"type": "text", "text": piece},
                },
            )
            if seconds:
                self.sleep(sid, seconds / len(pieces))

    def tool(self, sid: str, command: str, cwd: str, withdraw: float | None = None) -> str | None:
        """A Bash call; its output, or None when rejected (or its request withdrawn)."""
        call = _id("toolu_")
        base = {"toolCallId": call}
        where = [{"path": cwd}]
        self.update(
            sid,
            {
                "sessionUpdate": "tool_call",
                **base,
                "title": "Bash",
                "kind": "execute",
                "status": "pending",
                "locations": where,
                "rawInput": {"cwd": cwd},
            },
        )
        full_input = {"command": command, "description": "Run a scripted command", "cwd": cwd}
        running = {
            "sessionUpdate": "tool_call_update",
            **base,
            "status": "in_progress",
            "kind": "execute",
            "title": command,
            "locations": where,
            "rawInput": full_input,
        }
        if any(command.startswith(rule) for rule in self.rules):
            self.update(sid, running)
        else:
            # OpenCode's race, as captured: the first request of a process comes after the
            # in_progress update, later ones before it.
            first = self.next_request_id == 0
            if first:
                self.update(sid, running)
            outcome = self.ask(sid, call, command, running, not first, withdraw)
            if outcome in ("once", "always"):
                self.update(sid, running)
            if outcome == "always":
                self.rules.append(command.split(" ", 1)[0] + " ")
            elif outcome != "once":
                rejected = [{"type": "content", "content": {"type": "text", "text": REJECTED}}]
                self.update(
                    sid,
                    {
                        **running,
                        "status": "failed",
                        "content": rejected,
                        "rawOutput": {"error": REJECTED},
                    },
                )
                return None
        done = subprocess.run(
            command, shell=True, cwd=cwd or None, capture_output=True, text=True, check=False
        )
        output = done.stdout + done.stderr
        content = [{"type": "content", "content": {"type": "text", "text": output}}]
        self.update(sid, {**running, "content": content})
        meta = {"output": output, "exit": done.returncode, "truncated": False}
        self.update(
            sid,
            {
                "sessionUpdate": "tool_call_update",
                **base,
                "status": "completed",
                "title": command,
                "content": content,
                "rawOutput": {"output": output, "metadata": meta},
            },
        )
        return output

    def ask(
        self,
        sid: str,
        call: str,
        command: str,
        running: dict[str, Any],
        then_running: bool,
        withdraw: float | None,
    ) -> str:
        with self.cond:
            rid = self.next_request_id
            self.next_request_id += 1
        tool_call = {
            "toolCallId": call,
            "title": command,
            "kind": "execute",
            "status": "pending",
            "locations": [],
            "rawInput": {"command": command},
        }
        self.write(
            {
                "id": rid,
                "method": "session/request_permission",
                "params": {"sessionId": sid, "toolCall": tool_call, "options": OPTIONS},
            }
        )
        if then_running:
            self.update(sid, running)
        withdraw_at = None if withdraw is None else time.monotonic() + withdraw
        with self.cond:
            while rid not in self.answers:
                if self.eof:
                    os._exit(0)
                if withdraw_at is not None and time.monotonic() >= withdraw_at:
                    withdraw_at = None  # once; the answer the spec requires is awaited
                    self.write({"method": "$/cancel_request", "params": {"requestId": rid}})
                if sid in self.cancelled:  # like OpenCode: no wait for the late answer
                    aborted = {
                        **running,
                        "status": "failed",
                        "content": [
                            {"type": "content", "content": {"type": "text", "text": ABORTED}}
                        ],
                        "rawOutput": {"error": ABORTED, "metadata": {"interrupted": True}},
                    }
                    self.update(sid, aborted)
                    raise Cancelled
                self.cond.wait(0.05)
            outcome = self.answers.pop(rid).get("outcome") or {}
        return (
            str(outcome.get("optionId", ""))
            if outcome.get("outcome") == "selected"
            else "cancelled"
        )


def main() -> None:
    args = sys.argv[1:]
    if "--version" in args:
        print(VERSION)
        return
    if not args or args[0] != "acp":
        print("usage: fake_acp_agent.py acp", file=sys.stderr)
        sys.exit(2)
    fault = os.environ.get("FAKE_ACP_FAULT", "")
    if fault == "exit-at-start":
        print("fake: exiting at start as asked", file=sys.stderr, flush=True)
        sys.exit(3)
    agent = Agent(fault)
    worker = threading.Thread(target=agent.worker, daemon=True)
    worker.start()
    for line in sys.stdin:
        if line.strip():
            agent.handle(line.strip())
    with agent.cond:
        agent.eof = True
        agent.cond.notify_all()
    if fault == "no-initialize":
        return
    worker.join(timeout=5)


if __name__ == "__main__":
    main()
