"""The local web chat's figures, in a real headless Chromium on loopback.

    .venv/bin/python benchmarks/web.py [--quick]

1. First page load: a fresh navigation to the page (HTML + CSS + one script bundle,
   browser cache off) until the load event, from the browser's Navigation Timing; p50 over the runs.
   Also the same files fetched by a plain HTTP client (keep-alive), for the server's part.
2. Agent text -> visible: 10 threads stream at once (an edit per thread every 100 ms, the
   web chat's edit interval); the open tab shows one of them. From just before the core's
   `edit` call to a MutationObserver in the page seeing that edit's marker in the DOM
   (both clocks are this machine's wall clock). p50/p99 over every edit of the shown thread.
3. A 2,000-message thread opens: from the click in the sidebar to its newest message
   rendered (Markdown) in the DOM, then the next animation frame. The page renders the
   newest 100 and older ones on demand ("Show earlier messages").

Runs the web chat (tests/web_world.py: server + stand-in core in a thread) in this
process; the browser is Debian's chromium through chromium-driver.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from supervisor.chat.web import security
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.port import WEB_PLACE, ThreadRef
from tests.web_browser import start_driver, wait_for
from tests.web_world import WebWorld

ASSETS = ("/", "/static/app.css", "/static/bundle.js")


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))]


def first_load(driver: Any, world: WebWorld, runs: int) -> tuple[list[float], list[float]]:
    driver.get(world.url)  # the cookie
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    browser: list[float] = []
    for _ in range(runs):
        driver.get("about:blank")
        driver.get(world.base + "/")
        wait_for(lambda: driver.execute_script(
            "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0"
        ), what="load event")  # fmt: skip
        browser.append(driver.execute_script(
            "return performance.getEntriesByType('navigation')[0].loadEventEnd"
        ))  # fmt: skip
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
    cookie = {security.cookie_name(world.port): world.token()}
    client_ms: list[float] = []
    with httpx.Client(base_url=world.base, cookies=cookie) as client:
        for _ in range(runs):
            started = time.perf_counter()
            for path in ASSETS:
                client.get(path).raise_for_status()
            client_ms.append((time.perf_counter() - started) * 1000)
    return browser, client_ms


OBSERVER = """
window.__seen = [];
const seen = new Set();
new MutationObserver(() => {
  const now = Date.now();
  const text = document.getElementById('messages').textContent;
  for (const m of text.matchAll(/mk(\\d+)x/g)) {
    if (!seen.has(m[1])) { seen.add(m[1]); window.__seen.push([Number(m[1]), now]); }
  }
}).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
"""


def streaming(driver: Any, world: WebWorld, seconds: float) -> list[float]:
    assert world.chat is not None
    front = world.chat.front

    async def open_threads() -> list[ThreadRef]:
        return [
            await front.open_thread(WEB_PLACE, f"s{i}", f"stream {i}", f"bench-{i}")
            for i in range(10)
        ]

    threads: list[ThreadRef] = world.call(open_threads)
    driver.get(world.base + "/")
    wait_for(lambda: driver.find_element("id", "connection").text == "connected", what="up")
    driver.find_element("css selector", f"button[data-thread='{threads[0].thread_id}']").click()
    wait_for(lambda: "stream 0" in driver.find_element("id", "messages").text, what="opened")
    driver.execute_script(OBSERVER)
    sent: dict[int, float] = {}

    async def stream_all() -> None:
        async def one(index: int, thread: ThreadRef) -> None:
            message = (await front.create(thread, "", f"bench-answer-{index}")).id
            text = ""
            n = 0
            deadline = trio.current_time() + seconds
            while trio.current_time() < deadline:
                await trio.sleep(0.1)
                n += 1
                text += f"word{n} " * 3 + (f"mk{n}x " if index == 0 else "")
                if index == 0:
                    sent[n] = time.time() * 1000
                await front.edit(message, text)

        async with trio.open_nursery() as nursery:
            for index, thread in enumerate(threads):
                nursery.start_soon(one, index, thread)

    world.call(stream_all)
    time.sleep(1)
    seen: list[list[float]] = driver.execute_script("return window.__seen")
    return [at - sent[int(n)] for n, at in seen if int(n) in sent]


def long_thread(driver: Any, world: WebWorld, messages: int) -> float:
    db = WebDb(world.state_dir / "web.sqlite3")
    thread = db.open_thread("bench-long", "long", "claude", "~")
    for i in range(messages):
        if i % 2:
            text = f"Answer {i}: some **bold** text, `code`, and a list:\n\n- one\n- two\n"
            db.create(thread.id, "bot", "text", text, key=f"long-{i}")
        else:
            db.create(thread.id, "user", "text", f"prompt {i}", key=f"long-{i}")
    db.close()
    driver.get(world.base + "/")
    wait_for(lambda: driver.find_element("id", "connection").text == "connected", what="up")
    wait_for(lambda: driver.find_elements("css selector", f"button[data-thread='{thread.id}']"),
             what="thread listed")  # fmt: skip
    # Opened = the newest message rendered (older ones render on demand, 100 at a time).
    elapsed: float = driver.execute_async_script(
        """
        const [id, last, done] = arguments;
        const started = performance.now();
        document.querySelector(`button[data-thread='${id}']`).click();
        (function poll() {
          const newest = document.querySelector('#messages > li:last-child');
          if (newest && newest.textContent.includes(last)) {
            requestAnimationFrame(() => done(performance.now() - started));
          } else setTimeout(poll, 5);
        })();
        """,
        thread.id,
        f"Answer {messages - 1}:",
    )
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs, seconds, count = (5, 2.0, 200) if args.quick else (30, 15.0, 2000)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        world = WebWorld(root / "state").start()
        driver = start_driver(root / "profile")
        driver.set_script_timeout(30)
        try:
            browser, client = first_load(driver, world, runs)
            latencies = streaming(driver, world, seconds)
            opened = long_thread(driver, world, count)
        finally:
            driver.quit()
            world.close()
    print("| figure | value |")
    print("|---|---|")
    print(f"| first page load (browser, cache off), p50 | {statistics.median(browser):.0f} ms |")
    print(f"| first page load (HTTP client, 3 files), p50 | {statistics.median(client):.1f} ms |")
    print(
        f"| text -> visible in DOM, 10 threads streaming, p50 / p99 (n={len(latencies)}) | "
        f"{nearest_rank(latencies, 0.5):.0f} ms / {nearest_rank(latencies, 0.99):.0f} ms |"
    )
    print(f"| {count}-message thread opens | {opened:.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
