"""A fake Anthropic Messages API for driving the real Claude Code CLI in tests.

A real HTTP/1.1 server (trio + h11) on 127.0.0.1, random port. Point the CLI at it
with ``ANTHROPIC_BASE_URL=server.url`` (see ``tests/realcli.py``)::

    server = FakeAnthropic()
    await nursery.start(server.serve)        # or: async with FakeAnthropic().running() as server
    ... server.url, server.requests ...

Endpoints
---------
* ``POST /v1/messages`` (the CLI adds ``?beta=true``): ``stream: true`` -> SSE
  (``message_start`` -> ``ping`` -> (``content_block_start`` -> ``content_block_delta``* ->
  ``content_block_stop``)* -> ``message_delta`` -> ``message_stop``), chunked transfer
  encoding, keep-alive; ``stream: false`` -> one JSON message.
* ``POST /v1/messages/count_tokens`` -> ``{"input_tokens": N}``.
* ``HEAD /`` and ``GET /`` -> 200 (2.1.197 probes ``HEAD /`` at startup).
* anything else -> 404 with an Anthropic error body.

Scripted model
--------------
The behaviour is decided by the *latest user prompt* in ``messages``: the last user text
that is not CLI-injected (``<system-reminder>`` blocks are cut out, ``[Request interrupted
...]`` markers and ``role: "system"`` entries are ignored; every remaining user text block
counts as one prompt -- 2.1.330 sends an unanswered prompt (e.g. after an API error) as
its own text block, with a trailing newline, in the next user message). Directives are
read from the final paragraph of the latest prompt only, so a host that merges prompts
itself (``"[fail 500]\n\nnext"``) does not fail again.

``(no directive)``
    text ``echo #N: <prompt> (earlier: '<p1>', '<p2>')`` -- N counts every user prompt in
    the request, the list shows all earlier ones (``(earlier: none)`` for the first), so
    a resumed conversation visibly carries its history.
``[tool CMD]``
    a ``Bash`` tool_use ``{command: CMD, description: ...}`` (stop_reason ``tool_use``).
``[write PATH]``
    a ``Write`` tool_use ``{file_path: PATH, content: "written by the fake model\\n"}``.
    Several tool directives in one prompt run one after another (one per model call).
    Once every tool directive has its ``tool_result``, the answer is one line per result:
    ``tool said: <content>`` or, for ``is_error`` results, ``tool was denied: <content>``.
``[slow S]``
    stream the text answer in ~10 deltas per second over S seconds (interrupt tests).
``[hang]``
    start the answer, then send nothing but ``ping`` events until the client goes away.
``[think]``
    put a ``thinking`` block (with ``signature_delta``) before the text.
``[fail N]``
    answer HTTP N with an Anthropic error JSON body and ``x-should-retry: false``: the CLI
    gives up at once (1 request; for 400 it still re-sends 5 times with fewer betas) and
    ends the turn with ``is_error: true`` / ``api_error_status: N``.
``[fail N K]``
    fail only the first K requests carrying that prompt (``x-should-retry: true``), then
    answer normally: the CLI retries on its own (backoff ~0.55 s, 1.1 s, ... up to 10
    attempts, ``system/api_retry`` frames; ``retry-after: 0`` is not honoured).

Headers are recorded as h11 delivers them: lower-case names.

Every request is recorded in ``server.requests`` (method, path, headers minus
``x-api-key``/``authorization``, parsed JSON body). Usage numbers are reported in
``message_start``/``message_delta`` so the CLI computes a (list price) cost.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

__all__ = ["FakeAnthropic", "RecordedRequest", "Scripted", "plan_reply"]

SECRET_HEADERS = frozenset({"x-api-key", "authorization"})
WRITE_CONTENT = "written by the fake model\n"

_REMINDER_RE = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)
_DIRECTIVE_RE = re.compile(r"\[(tool|write|slow|fail|hang|think)(?:\s+([^\]]*))?\]")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


# --------------------------------------------------------------------------- requests


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON (dict) or None; raw text if it was not JSON
    t: float = field(default_factory=time.monotonic)
    status: int | None = None  # what the fake answered

    @property
    def is_messages(self) -> bool:
        return self.method == "POST" and self.path.split("?", 1)[0] == "/v1/messages"

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict):
            return list(self.body.get("messages") or [])
        return []

    @property
    def prompts(self) -> list[str]:
        """The user prompts in this request, oldest first (see ``user_prompts``)."""
        return [text for _, text in user_prompts(self.messages)]

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        return [b for _, b in _blocks(self.messages) if b.get("type") == "tool_result"]


# --------------------------------------------------------------------------- the "model"


def _blocks(messages: Iterable[dict[str, Any]]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(role, block) for every content block of every non-system message, in order."""
    for m in messages:
        role = str(m.get("role"))
        if role == "system":
            continue
        content = m.get("content")
        if isinstance(content, str):
            yield role, {"type": "text", "text": content}
        elif isinstance(content, list):
            for b in content:
                if isinstance(b, dict):
                    yield role, b


def _prompt_text(text: str) -> str | None:
    """The user-written part of a user text block, None if the CLI injected it."""
    text = _REMINDER_RE.sub("", text).strip()
    if not text or text.startswith("[Request interrupted"):
        return None
    return text


def user_prompts(messages: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """(flat block index, text) of every user prompt, oldest first."""
    out = []
    for i, (role, b) in enumerate(_blocks(messages)):
        if role == "user" and b.get("type") == "text":
            text = _prompt_text(str(b.get("text", "")))
            if text is not None:
                out.append((i, text))
    return out


def _tool_result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        parts = [str(c.get("text", "")) for c in content if isinstance(c, dict)]
        content = "\n".join(p for p in parts if p)
    return str(content if content is not None else "").strip()


@dataclass
class Scripted:
    """What the fake model does for one request."""

    blocks: list[dict[str, Any]] = field(default_factory=list)  # complete content blocks
    stop_reason: str = "end_turn"
    slow: float = 0.0  # seconds to spread the text over
    hang: bool = False
    fail: int | None = None  # HTTP status
    transient: bool = False  # [fail N K]: the CLI may retry


def _directives(prompt: str) -> list[tuple[str, str]]:
    last_paragraph = prompt.rsplit("\n\n", 1)[-1]
    return [
        (m.group(1), (m.group(2) or "").strip()) for m in _DIRECTIVE_RE.finditer(last_paragraph)
    ]


def plan_reply(
    messages: list[dict[str, Any]], fail_counts: dict[str, int] | None = None
) -> Scripted:
    """Decide the fake model's answer to ``messages`` (pure apart from ``fail_counts``)."""
    prompts = user_prompts(messages)
    if not prompts:
        return Scripted(blocks=[{"type": "text", "text": "echo #0: (no prompt found)"}])
    last_index, prompt = prompts[-1]
    earlier = [p for _, p in prompts[:-1]]
    directives = _directives(prompt)
    reply = Scripted()

    for name, arg in directives:
        if name == "fail":
            parts = arg.split()
            status = int(parts[0]) if parts and parts[0].isdigit() else 500
            limit = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            if limit is None:
                return Scripted(fail=status)
            if fail_counts is not None:
                key = f"{len(prompts)}:{prompt}"
                seen = fail_counts.get(key, 0)
                fail_counts[key] = seen + 1
                if seen < limit:
                    return Scripted(fail=status, transient=True)
        elif name == "slow":
            try:
                reply.slow = max(0.0, float(arg or "1"))
            except ValueError:
                reply.slow = 1.0
        elif name == "hang":
            reply.hang = True
        elif name == "think":
            reply.blocks.append(
                {
                    "type": "thinking",
                    "thinking": f"Thinking about: {prompt}",
                    "signature": _new_id("fakesig_"),
                }
            )

    actions = [(n, a) for n, a in directives if n in ("tool", "write")]
    results = [
        b
        for i, (_, b) in enumerate(_blocks(messages))
        if i > last_index and b.get("type") == "tool_result"
    ]
    if len(results) < len(actions):
        name, arg = actions[len(results)]
        if name == "tool":
            tool = {
                "name": "Bash",
                "input": {"command": arg, "description": f"Scripted command: {arg}"},
            }
            intro = f"I will run: {arg}"
        else:
            tool = {"name": "Write", "input": {"file_path": arg, "content": WRITE_CONTENT}}
            intro = f"I will write: {arg}"
        reply.blocks.append({"type": "text", "text": intro})
        reply.blocks.append({"type": "tool_use", "id": _new_id("toolu_fake_"), **tool})
        reply.stop_reason = "tool_use"
        return reply

    if actions:
        lines = []
        for r in results[-len(actions) :]:
            verb = "tool was denied" if r.get("is_error") else "tool said"
            lines.append(f"{verb}: {_tool_result_text(r)}")
        text = "\n".join(lines)
    else:
        quoted = ", ".join(f"'{p}'" for p in earlier) if earlier else "none"
        text = f"echo #{len(prompts)}: {prompt} (earlier: {quoted})"
    reply.blocks.append({"type": "text", "text": text})
    return reply


def _estimate_tokens(obj: Any) -> int:
    return max(1, len(json.dumps(obj, ensure_ascii=False)) // 4)


# --------------------------------------------------------------------------- server


class FakeAnthropic:
    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, model: str | None = None) -> None:
        self.host = host
        self.port = port
        self.model = model  # None: echo the request's model
        self.requests: list[RecordedRequest] = []
        self.url = ""
        self._fail_counts: dict[str, int] = {}
        self._changed = trio.Condition()
        self._seq = 0

    # -- lifecycle ---------------------------------------------------------------

    async def serve(
        self, *, task_status: trio.TaskStatus[FakeAnthropic] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            await trio.serve_listeners(self._handle_connection, listeners, handler_nursery=nursery)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeAnthropic]:
        """``async with FakeAnthropic().running() as server:`` -- serves inside the block."""
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(self.serve)
                try:
                    yield self
                finally:
                    nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # re-raise a lone error from the block as itself
            if len(group.exceptions) == 1 and not isinstance(
                group.exceptions[0], BaseExceptionGroup | trio.Cancelled
            ):
                raise group.exceptions[0] from None
            raise

    # -- helpers for tests -------------------------------------------------------

    @property
    def message_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.is_messages]

    async def wait_for_requests(
        self, count: int, *, messages_only: bool = True
    ) -> list[RecordedRequest]:
        """Block until at least ``count`` (messages) requests have been received."""
        async with self._changed:
            while True:
                got = self.message_requests if messages_only else self.requests
                if len(got) >= count:
                    return got
                await self._changed.wait()

    async def _record(self, req: RecordedRequest) -> None:
        self.requests.append(req)
        async with self._changed:
            self._changed.notify_all()

    # -- HTTP plumbing -----------------------------------------------------------

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                got = await self._read_request(conn, stream)
                if got is None:
                    return
                request, body = got
                await self._dispatch(conn, stream, request, body)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
            ConnectionError,
        ):
            return
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @staticmethod
    async def _read_request(
        conn: h11.Connection, stream: trio.SocketStream
    ) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)  # b"" = EOF
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    @staticmethod
    async def _send(conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        extra: Iterable[tuple[str, str]] = (),
    ) -> None:
        headers = [("content-type", content_type), ("content-length", str(len(body))), *extra]
        await self._send(conn, stream, h11.Response(status_code=status, headers=headers))
        if body:
            await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _dispatch(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, raw: bytes
    ) -> None:
        method = request.method.decode()
        path = request.target.decode()
        headers = {
            k.decode(): v.decode()
            for k, v in request.headers
            if k.decode().lower() not in SECRET_HEADERS
        }
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        rec = RecordedRequest(method=method, path=path, headers=headers, body=body)
        await self._record(rec)
        route = path.split("?", 1)[0]
        request_id = _new_id("req_fake_")
        rid = [("request-id", request_id)]

        if method in ("HEAD", "GET") and route == "/":
            rec.status = 200
            await self._respond(conn, stream, 200, b"" if method == "HEAD" else b"{}", extra=rid)
            return
        if method == "POST" and route == "/v1/messages/count_tokens":
            rec.status = 200
            answer = {"input_tokens": _estimate_tokens(body)}
            await self._respond(conn, stream, 200, json.dumps(answer).encode(), extra=rid)
            return
        if method != "POST" or route != "/v1/messages" or not isinstance(body, dict):
            rec.status = 404
            await self._respond(
                conn, stream, 404, _error_body(404, f"fake: no route {method} {route}"), extra=rid
            )
            return

        plan = plan_reply(rec.messages, self._fail_counts)
        if plan.fail is not None:
            rec.status = plan.fail
            # A permanent failure tells the CLI not to retry; a transient one ([fail N K])
            # invites an immediate retry.
            retry = (
                [("x-should-retry", "true"), ("retry-after", "0")]
                if plan.transient
                else [("x-should-retry", "false")]
            )
            extra = [*rid, *retry]
            await self._respond(
                conn,
                stream,
                plan.fail,
                _error_body(plan.fail, f"fake failure {plan.fail}"),
                extra=extra,
            )
            return

        model = self.model or str(body.get("model") or "claude-fake")
        message: dict[str, Any] = {
            "id": _new_id("msg_fake_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": _estimate_tokens(body.get("messages"))
                + _estimate_tokens(body.get("system")),
                "output_tokens": 1,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }
        output_tokens = sum(_estimate_tokens(b) for b in plan.blocks)
        rec.status = 200
        if not body.get("stream"):
            message["content"] = plan.blocks
            message["stop_reason"] = plan.stop_reason
            message["usage"]["output_tokens"] = output_tokens
            await self._respond(conn, stream, 200, json.dumps(message).encode(), extra=rid)
            return

        sse_headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-cache"),
            *rid,
        ]
        # No content-length: h11 uses chunked transfer encoding for an HTTP/1.1 client.
        await self._send(conn, stream, h11.Response(status_code=200, headers=sse_headers))

        async def event(payload: dict[str, Any]) -> None:
            data = f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()
            await self._send(conn, stream, h11.Data(data=data))

        await event({"type": "message_start", "message": message})
        await event({"type": "ping"})
        text_chunks = sum(1 for b in plan.blocks if b["type"] == "text")
        per_chunk_delay = 0.0
        pieces_per_text = 1
        if plan.slow > 0 and text_chunks:
            pieces_per_text = max(2, math.ceil(plan.slow * 10))
            per_chunk_delay = plan.slow / (pieces_per_text * text_chunks)
        for index, block in enumerate(plan.blocks):
            kind = block["type"]
            if kind == "text":
                await event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                if plan.hang:
                    await event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": "..."},
                        }
                    )
                    while True:  # the write fails once the client has gone away
                        await trio.sleep(0.25)
                        await event({"type": "ping"})
                for piece in _split(block["text"], pieces_per_text):
                    await event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
                    if per_chunk_delay:
                        await trio.sleep(per_chunk_delay)
            elif kind == "thinking":
                await event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
                    }
                )
                await event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                    }
                )
                await event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": block["signature"]},
                    }
                )
            elif kind == "tool_use":
                start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                await event({"type": "content_block_start", "index": index, "content_block": start})
                for piece in _split(json.dumps(block["input"]), 3):
                    await event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
            await event({"type": "content_block_stop", "index": index})
        await event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": plan.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        )
        await event({"type": "message_stop"})
        await self._send(conn, stream, h11.EndOfMessage())


def _split(text: str, pieces: int) -> list[str]:
    if pieces <= 1 or len(text) <= 1:
        return [text]
    size = max(1, math.ceil(len(text) / pieces))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _error_body(status: int, message: str) -> bytes:
    kind = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


# --------------------------------------------------------------------------- CLI


def main() -> None:
    """Run the fake by hand: ``python -m tests.fakes.fake_anthropic --port 18081``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", help="append every request as JSON lines here")
    args = parser.parse_args()

    async def run() -> None:
        server = FakeAnthropic(host=args.host, port=args.port)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve)
            print(f"fake Anthropic API on {server.url}", flush=True)
            logged = 0
            while True:
                await trio.sleep(0.2)
                if args.log and len(server.requests) > logged:
                    with open(args.log, "a", encoding="utf-8") as f:  # noqa: ASYNC230
                        for r in server.requests[logged:]:
                            f.write(
                                json.dumps(
                                    {
                                        "method": r.method,
                                        "path": r.path,
                                        "headers": r.headers,
                                        "body": r.body,
                                    }
                                )
                                + "\n"
                            )
                    logged = len(server.requests)

    trio.run(run)


if __name__ == "__main__":
    main()
