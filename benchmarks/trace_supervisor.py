#!/usr/bin/env python3
"""Run the supervisor with stopwatches on the routing path (a diagnostic, not a figure).

`python benchmarks/trace_supervisor.py OUT.jsonl run --config ...` is `python -m
supervisor run --config ...` with, recorded in memory and written to OUT.jsonl at exit:

- `ws`: epoch time a WebSocket message left trio-websocket (`get_message` returned), with
  the post id when it is a `posted` event;
- `to_agent`: just before a prompt's bytes are written to an agent's stdin, and `sent`
  just after, with the prompt text;
- `gc`: every garbage collection of generation 2, with its duration;
- `encode`: every encoding of sessions.json by the store, with its duration;
- `write`: every atomic write of sessions.json (in the store's worker thread), with its
  duration (the fsyncs);
- `append`: every commit's line appended to sessions.journal (on the event loop, or in a
  worker thread once the disk proved slow), with its duration (the synchronous write);
- `step`: every step of a trio task that held the event loop over `LONG_STEP_S`, with
  the task's name (what else ran while a prompt waited).

The supervisor's code is not changed: the stopwatches wrap seven functions from outside.
Used by `diagnose_routing.py` to split routing latency into its stages.
"""

from __future__ import annotations

import gc
import json
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

_POST_ID = re.compile(r'\\"id\\":\\"([a-z0-9]{26})\\"')
records: list[dict[str, Any]] = []
LONG_STEP_S = 0.0005


class LongSteps(trio.abc.Instrument):
    """A trio instrument: records the task steps that held the event loop long."""

    def __init__(self) -> None:
        self.started = 0.0

    def before_task_step(self, task: Any) -> None:
        self.started = time.perf_counter()

    def after_task_step(self, task: Any) -> None:
        took = time.perf_counter() - self.started
        if took > LONG_STEP_S:
            records.append({"what": "step", "t": time.time(), "s": took, "task": task.name})


def install() -> None:
    import trio_websocket

    from supervisor import app
    from supervisor.core import state
    from supervisor.core.agent_events import SendPrompt
    from supervisor.runtime import agent_process, store

    get_message = trio_websocket.WebSocketConnection.get_message

    async def timed_get_message(self: Any) -> Any:
        message = await get_message(self)
        t = time.time()
        if isinstance(message, str) and '"event":"posted"' in message:
            match = _POST_ID.search(message)
            records.append({"what": "ws", "t": t, "post": match.group(1) if match else None})
        return message

    trio_websocket.WebSocketConnection.get_message = timed_get_message  # type: ignore[method-assign]

    send = agent_process.AgentProcess.send

    async def timed_send(self: Any, command: Any) -> Any:
        if not isinstance(command, SendPrompt):
            return await send(self, command)
        t = time.time()
        events = await send(self, command)  # the session uses them: hand them back
        records.append({"what": "to_agent", "t": t, "sent": time.time(), "text": command.text})
        return events

    agent_process.AgentProcess.send = timed_send  # type: ignore[method-assign]

    # The store encodes through the `Encoder` of core.state: wrap its method.
    encode = state.Encoder.encode

    def timed_encode(self: Any, value: Any, *more: Any) -> bytes:
        t, cpu = time.perf_counter(), time.thread_time()
        raw: bytes = encode(self, value, *more)
        records.append({"what": "encode", "t": time.time(), "s": time.perf_counter() - t,
                        "cpu": time.thread_time() - cpu, "bytes": len(raw)})
        return raw

    state.Encoder.encode = timed_encode  # type: ignore[method-assign,assignment]

    def timed_disk(what: str, write: Callable[[Any, bytes], None]) -> Callable[[Any, bytes], None]:
        def timed(target: Any, raw: bytes) -> None:
            t = time.perf_counter()
            write(target, raw)
            records.append({"what": what, "t": time.time(), "s": time.perf_counter() - t, "bytes": len(raw)})

        return timed

    store.write_atomically = timed_disk("write", store.write_atomically)  # type: ignore[assignment]  # a snapshot
    store.append_line = timed_disk("append", store.append_line)  # type: ignore[assignment]  # a commit

    started: list[float] = []

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            records.append({"what": "gc", "t": time.time(), "s": time.perf_counter() - started[0],
                            "collected": info.get("collected")})

    gc.callbacks.append(on_gc)

    run = app.run

    async def instrumented_run(*args: Any, **kwargs: Any) -> Any:
        trio.lowlevel.add_instrument(LongSteps())
        return await run(*args, **kwargs)

    app.run = instrumented_run  # the cli imports it when it runs


def main() -> int:
    out = Path(sys.argv[1])
    install()
    from supervisor.cli import main as supervisor_main

    try:
        return supervisor_main(sys.argv[2:]) or 0
    finally:
        out.write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    sys.exit(main())
