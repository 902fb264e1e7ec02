"""The fake Messages API on its own (no CLI needed): script directives and HTTP shape."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio

from tests.fakes.fake_anthropic import WRITE_CONTENT, FakeAnthropic, plan_reply

REMINDER = {"type": "text", "text": "<system-reminder>\nsome ambient context\n</system-reminder>\n"}


def user(*texts: str) -> dict[str, Any]:
    return {"role": "user", "content": [REMINDER, *({"type": "text", "text": t} for t in texts)]}


def assistant(*blocks: dict[str, Any]) -> dict[str, Any]:
    return {"role": "assistant", "content": list(blocks)}


def tool_result(tool_use_id: str, content: Any, is_error: bool = False) -> dict[str, Any]:
    return {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": tool_use_id,
                "content": content,
                "is_error": is_error,
            }
        ],
    }


def text_of(messages: list[dict[str, Any]]) -> str:
    (block,) = [b for b in plan_reply(messages).blocks if b["type"] == "text"]
    return str(block["text"])


def test_echo_lists_earlier_prompts_and_ignores_cli_injections() -> None:
    messages = [
        user("hello there"),
        {"role": "system", "content": "# Environment\n..."},
        assistant({"type": "text", "text": "echo #1: ..."}),
        {"role": "user", "content": "second"},
        assistant({"type": "text", "text": "..."}),
        {"role": "user", "content": [{"type": "text", "text": "[Request interrupted by user]"}]},
        user("third"),
        {"role": "system", "content": [{"type": "text", "text": "deferred tools ..."}]},
    ]
    assert text_of(messages) == "echo #3: third (earlier: 'hello there', 'second')"
    assert text_of([user("only")]) == "echo #1: only (earlier: none)"


def test_tool_directives_run_in_order_then_quote_the_results() -> None:
    first = plan_reply([user("[tool echo a] [write /tmp/f]")])
    assert first.stop_reason == "tool_use"
    intro, call = first.blocks
    assert intro["type"] == "text"
    assert call["name"] == "Bash" and call["input"]["command"] == "echo a"
    assert call["input"]["description"]

    history = [
        user("[tool echo a] [write /tmp/f]"),
        assistant(*first.blocks),
        tool_result(call["id"], "a"),
    ]
    second = plan_reply(history)
    write = second.blocks[-1]
    assert write["name"] == "Write" and write["input"] == {
        "file_path": "/tmp/f",
        "content": WRITE_CONTENT,
    }

    history += [
        assistant(*second.blocks),
        tool_result(write["id"], [{"type": "text", "text": "nope"}], is_error=True),
    ]
    final = plan_reply(history)
    assert final.stop_reason == "end_turn"
    assert final.blocks[0]["text"] == "tool said: a\ntool was denied: nope"


def test_fail_slow_hang_think_directives() -> None:
    assert plan_reply([user("[fail 503]")]).fail == 503
    counts: dict[str, int] = {}
    assert plan_reply([user("[fail 529 2]")], counts).fail == 529
    assert plan_reply([user("[fail 529 2]")], counts).fail == 529
    assert plan_reply([user("[fail 529 2]")], counts).fail is None
    # Directives only count in the last paragraph of a (merged) prompt.
    assert plan_reply([{"role": "user", "content": "[fail 500]\n\nnormal now"}]).fail is None
    assert plan_reply([user("[slow 2.5]")]).slow == 2.5
    assert plan_reply([user("[hang]")]).hang
    think = plan_reply([user("[think] hi")])
    assert [b["type"] for b in think.blocks] == ["thinking", "text"]


def sse_events(body: str) -> list[dict[str, Any]]:
    events = []
    for chunk in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in chunk.splitlines())
        payload = json.loads(lines["data"])
        assert payload["type"] == lines["event"]
        events.append(payload)
    return events


async def test_http_streaming_json_errors_and_recording() -> None:
    body = {"model": "claude-x", "max_tokens": 10, "stream": True, "messages": [user("[tool ls]")]}
    with trio.fail_after(10):
        async with (
            FakeAnthropic().running() as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            assert (await client.head("/")).status_code == 200

            r = await client.post(
                "/v1/messages?beta=true", json=body, headers={"x-api-key": "secret"}
            )
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["transfer-encoding"] == "chunked"
            events = sse_events(r.text)
            kinds = [e["type"] for e in events]
            assert kinds[:2] == ["message_start", "ping"]
            assert kinds[-2:] == ["message_delta", "message_stop"]
            assert events[0]["message"]["usage"]["input_tokens"] > 0
            assert events[-2]["delta"]["stop_reason"] == "tool_use"
            assert events[-2]["usage"]["output_tokens"] > 0
            tool_json = "".join(
                e["delta"]["partial_json"]
                for e in events
                if e["type"] == "content_block_delta" and e["index"] == 1
            )
            assert json.loads(tool_json)["command"] == "ls"

            r = await client.post(
                "/v1/messages", json={**body, "stream": False, "messages": [user("hi")]}
            )
            assert r.json()["content"] == [{"type": "text", "text": "echo #1: hi (earlier: none)"}]

            r = await client.post("/v1/messages", json={**body, "messages": [user("[fail 429]")]})
            assert r.status_code == 429
            assert r.json() == {
                "type": "error",
                "error": {"type": "rate_limit_error", "message": "fake failure 429"},
            }
            assert r.headers["x-should-retry"] == "false"

            r = await client.post("/v1/messages/count_tokens", json=body)
            assert r.json()["input_tokens"] > 0
            assert (await client.get("/v1/nope")).status_code == 404

    assert [(r.method, r.path, r.status) for r in server.requests] == [
        ("HEAD", "/", 200),
        ("POST", "/v1/messages?beta=true", 200),
        ("POST", "/v1/messages", 200),
        ("POST", "/v1/messages", 429),
        ("POST", "/v1/messages/count_tokens", 200),
        ("GET", "/v1/nope", 404),
    ]
    recorded = server.requests[1]
    assert "x-api-key" not in recorded.headers
    assert recorded.body == body
    assert recorded.prompts == ["[tool ls]"]
    assert len(server.message_requests) == 3


async def test_slow_stream_spreads_deltas_and_survives_a_client_hangup() -> None:
    body = {"model": "m", "stream": True, "messages": [user("[slow 0.5]")]}
    with trio.fail_after(10):
        async with (
            FakeAnthropic().running() as server,
            httpx.AsyncClient(base_url=server.url) as client,
        ):
            start = trio.current_time()
            r = await client.post("/v1/messages", json=body)
            assert trio.current_time() - start >= 0.4
            deltas = [e for e in sse_events(r.text) if e["type"] == "content_block_delta"]
            assert len(deltas) >= 5

            # A client that goes away mid-stream ([hang]) must not break the server.
            payload = json.dumps({**body, "messages": [user("[hang]")]}).encode()
            port = int(server.url.rsplit(":", 1)[1])
            async with await trio.open_tcp_stream("127.0.0.1", port) as sock:
                head = f"POST /v1/messages HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
                await sock.send_all(head.encode() + payload)
                first = await sock.receive_some(65536)
                assert first.startswith(b"HTTP/1.1 200")
            r = await client.post("/v1/messages", json={**body, "messages": [user("after")]})
            assert r.status_code == 200
            await server.wait_for_requests(3)


@pytest.mark.parametrize("n", [1, 3])
async def test_wait_for_requests(n: int) -> None:
    with trio.fail_after(10):
        async with (
            FakeAnthropic().running() as server,
            httpx.AsyncClient(base_url=server.url) as client,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(server.wait_for_requests, n)
            for _ in range(n):
                await client.post("/v1/messages", json={"model": "m", "messages": [user("x")]})
