"""The web chat in a real headless Chromium (Debian's), against the stand-in core.

One browser for the module (it takes seconds to start); one web chat per test, each on
its own port, so cookies and localStorage never leak between tests. Screenshots go to
test-artifacts/ (git-ignored).
"""

from __future__ import annotations

import http.server
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from supervisor.chat.web import asgi, store
from supervisor.chat.web.db import WebDb
from supervisor.chat.web.port import WEB_PLACE, ThreadRef
from tests.web_browser import require_browser, start_driver, wait_for
from tests.web_world import WebWorld

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    browser = start_driver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[WebWorld]:
    served = WebWorld(tmp_path / "state").start()
    try:
        yield served
    finally:
        served.close()


@pytest.fixture
def phone(driver: Any) -> Iterator[None]:
    """The browser as a phone: 390x844, a finger for a pointer (set before a page loads)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True},
    )
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@contextmanager
def timing(driver: Any, **bounds: int) -> Iterator[None]:
    """The page's time bounds (static/app.js `TIMING`) shortened for pages loaded in the block."""
    script = f"window.supervisorTiming = {json.dumps(bounds)};"
    added = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": script})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": added["identifier"]})


class Page:
    """What a person sees and does, in Selenium's words."""

    def __init__(self, driver: Any, world: WebWorld) -> None:
        from selenium.webdriver.common.by import By

        self.d = driver
        self.world = world
        self.by = By

    def open(self) -> Page:
        self.d.get(self.world.url)
        self.wait_connected()
        return self

    def el(self, css: str) -> Any:
        return self.d.find_element(self.by.CSS_SELECTOR, css)

    def els(self, css: str) -> list[Any]:
        return list(self.d.find_elements(self.by.CSS_SELECTOR, css))

    def wait_connected(self) -> None:
        wait_for(lambda: self.el("#connection").text == "connected", what="connected")

    def watch_connection(self) -> None:
        """From now on `connection_seen()` lists each state the connection line shows."""
        self.d.execute_script("""
            const line = document.getElementById("connection");
            window.connectionSeen = [];
            new MutationObserver(() => window.connectionSeen.push(line.textContent))
              .observe(line, { childList: true, characterData: true, subtree: true });""")

    def connection_seen(self) -> list[str]:
        seen: list[str] = self.d.execute_script("return window.connectionSeen")
        return seen

    def new_session(self, name: str, cwd: str = "/tmp") -> None:
        if self.el("#menu").is_displayed() and not self.el("#sidebar").is_displayed():
            self.el("#menu").click()  # a phone: the form is in the sidebar
            self.wait_sidebar_in_place()
        if self.el("#new-session").get_attribute("hidden") is not None:
            self.el("#new-toggle").click()
        self.el("#new-name").send_keys(name)
        self.el("#new-cwd").send_keys(cwd)
        self.el("#new-session button[type=submit]").click()
        wait_for(lambda: self.el("#thread-title").text == name, what=f"session {name} selected")

    def wait_sidebar_in_place(self) -> None:
        """On a phone the sidebar slides in (0.15 s): a click on it before then may find its
        button still off the screen, not interactable (it happened on a busy machine)."""
        left = "return document.getElementById('sidebar').getBoundingClientRect().left"
        wait_for(lambda: self.d.execute_script(left) >= 0, what="the sidebar in place")

    def send(self, text: str) -> None:
        box = self.el("#text")
        box.send_keys(text)
        self.el("#send").click()

    def texts(self, css: str) -> list[str]:
        # Read in one script: the page re-renders a message on every edit, so an element
        # found in one call may be gone by the next.
        found: list[str] = self.d.execute_script(
            "return Array.from(document.querySelectorAll(arguments[0]), e => e.innerText)", css
        )
        return found

    def bot_texts(self) -> list[str]:
        return self.texts("#messages > li.bot")

    def last_bot(self) -> str:
        texts = self.bot_texts()
        return texts[-1] if texts else ""

    def wait_text(self, needle: str, timeout: float = 10) -> None:
        wait_for(lambda: needle in self.texts("#messages")[0], timeout, what=repr(needle))

    def stored(self, kind: str) -> list[dict[str, Any]]:
        """The page's stored entries of `kind` ("outbox", "refused"), one key each."""
        found: list[dict[str, Any]] = self.d.execute_script(
            "const prefix = arguments[0];"
            "return Object.keys(localStorage).filter(k => k.startsWith(prefix))"
            ".map(k => JSON.parse(localStorage.getItem(k)));",
            f"supervisor-{kind}-{self.world.port}/",
        )
        return found

    def store_old_list(self, kind: str, entries: list[Any]) -> None:
        """A list as pages before one key per entry kept them (read once at load)."""
        self.d.execute_script(
            "localStorage.setItem(arguments[0], JSON.stringify(arguments[1]))",
            f"supervisor-{kind}-{self.world.port}", entries,
        )  # fmt: skip

    def tap(self, x: float, y: float) -> None:
        """A finger's tap at (x, y) of the viewport (with the `phone` fixture)."""
        self.d.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": x, "y": y}]})
        self.d.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    def hold_next_upload(self) -> None:
        """The page's next upload is made, then its answer held: `window.uploaded` is set,
        and `window.sendNow()` lets the page go on."""
        self.d.execute_script("""
            const upload = window.fetch;
            window.fetch = async (...args) => {
              window.fetch = upload; // this upload only
              const response = await upload(...args);
              window.uploaded = true;
              await new Promise((go) => { window.sendNow = go; });
              return response;
            };""")

    def thread_button(self, name: str) -> Any:
        for button in self.els("#threads button"):
            if button.find_element(self.by.CSS_SELECTOR, ".name").text.startswith(name):
                return button
        return None


def test_a_new_session_appears_in_the_sidebar_and_an_answer_grows_as_markdown(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("alpha", "/tmp")

    entry = wait_for(
        lambda: [t for t in page.texts("#threads button") if t.startswith("alpha")], what="entry"
    )[0]
    assert "idle" in entry and "claude" in entry and "/tmp" in entry
    page.send("long 40")
    lengths = []
    deadline = time.monotonic() + 15
    while "Done" not in page.last_bot() and time.monotonic() < deadline:
        lengths.append(len(page.last_bot()))
        time.sleep(0.1)
    assert "word39" in page.last_bot()
    growth = sorted(set(lengths))
    assert len(growth) >= 4, growth  # seen growing, not appearing at once

    page.send("markdown")
    wait_for(lambda: "That is all." in page.last_bot(), what="markdown answer")
    answer = page.els("#messages > li.bot")[-1]
    assert answer.find_elements(page.by.CSS_SELECTOR, "table td")
    assert "def hello" in answer.find_element(page.by.CSS_SELECTOR, "pre code").text
    thinking = answer.find_element(page.by.CSS_SELECTOR, "details.thinking")
    assert thinking.get_attribute("open") is None  # collapsed
    assert answer.find_element(page.by.CSS_SELECTOR, ".tool").text.startswith("🔧")
    assert answer.find_element(page.by.CSS_SELECTOR, ".completion").text.startswith("✅ Done")
    page.send("!status")
    page.wait_text("turns: 2")


def test_permission_cards_allow_deny_and_allow_for_this_session(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("perm")

    def answer(command: str, option: str) -> None:
        page.send(f"run {command}")
        button = wait_for(
            lambda: page.els(f"li.choice:last-child button[data-option={option}]"), what="card"
        )[0]
        assert {b.text for b in page.els("li.choice:last-child button")} == {
            "Allow", "Allow for this session", "Deny",
        }  # fmt: skip
        button.click()

    answer("ls", "allow_once")
    page.wait_text("Ran `ls`".replace("`", ""))
    assert "✅ Allowed" in page.texts("li.choice")[-1]
    answer("rm -rf /", "reject")
    page.wait_text("Did not run rm -rf /")
    assert "❌ Denied" in page.texts("li.choice")[-1]
    assert not page.els("li.choice button")  # settled cards keep no buttons
    answer("make", "allow_always")
    page.wait_text("Ran make")
    page.send("run make test")
    page.wait_text("Ran make test")

    assert len(page.els("li.choice")) == 3  # not asked again
    assert world.core is not None and world.core.ran == ["ls", "make", "make test"]


def test_a_refused_press_gives_the_buttons_back_with_the_reason(
    driver: Any, world: WebWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BUSY_TRIES", 1)  # refused after SQLite's own wait
    page = Page(driver, world).open()
    page.new_session("refused")
    page.send("run ls")
    allow = "li.choice:last-child button[data-option=allow_once]"
    wait_for(lambda: page.els(allow), what="card")
    # Another program holds the database (a sqlite3 shell left in a transaction): the
    # press cannot be recorded, and the server refuses it.
    other = sqlite3.connect(world.state_dir / "web.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        page.el(allow).click()
        notes = wait_for(lambda: page.texts("li.choice .reason"), 20, what="the reason shown")
    finally:
        other.execute("ROLLBACK")
        other.close()

    assert notes == ["Not done: the supervisor's database stayed locked by another program; send it again"]
    buttons = page.els("li.choice:last-child button")
    assert len(buttons) == 3 and all(b.is_enabled() for b in buttons)
    page.el(allow).click()
    page.wait_text("Ran ls")
    assert "✅ Allowed" in page.texts("li.choice")[-1]
    assert not page.els("li.choice .reason") and not page.el("#problem").is_displayed()
    assert world.core is not None and world.core.ran == ["ls"]

    # A press refused on a card answered meanwhile (here one left in the queue, refused on
    # the reload): the card shows its answer, with no buttons and nothing to press again.
    card = page.el("li.choice").get_attribute("data-id")
    page.store_old_list("outbox", [{"type": "choose", "id": "late-press-0001", "message": card, "option": "sometimes"}])
    driver.refresh()
    page.wait_connected()
    wait_for(lambda: page.stored("outbox") == [], what="the press refused")
    assert "✅ Allowed" in page.texts("li.choice")[-1]
    assert not page.els("li.choice button") and not page.els("li.choice .reason")
    assert not page.el("#problem").is_displayed()  # no "not done" for what was done
    assert world.core.ran == ["ls"]


def test_stop_interrupts_a_streaming_turn(driver: Any, world: WebWorld) -> None:
    page = Page(driver, world).open()
    page.new_session("stopper")
    page.send("long 500")
    wait_for(lambda: "word5 " in page.last_bot() + " ", what="streaming")
    stop = wait_for(lambda: page.el("#stop").is_displayed() and page.el("#stop"), what="Stop")
    stop.click()
    page.wait_text("Interrupted")
    frozen = [t for t in page.bot_texts() if "word" in t][-1]
    time.sleep(0.5)

    assert [t for t in page.bot_texts() if "word" in t][-1] == frozen
    assert "word499" not in frozen and "Done" not in frozen
    wait_for(lambda: not page.el("#stop").is_displayed(), what="Stop hidden after the turn")


def test_an_attachment_reaches_the_core(driver: Any, world: WebWorld, tmp_path: Path) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n" * 10)
    page = Page(driver, world).open()
    page.new_session("files")
    page.el("#files").send_keys(str(upload))
    wait_for(lambda: "notes.txt" in page.el("#attachments").text, what="chip")
    page.send("see attached")

    page.wait_text("received notes.txt: 200 bytes")
    assert world.core is not None and world.core.received == [("notes.txt", upload.read_bytes())]
    link = page.el("li.user .files a")
    assert link.text.endswith("notes.txt") and "/files/" in link.get_attribute("href")


def test_a_file_over_the_upload_limit_keeps_its_message_in_the_box_said_why(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    """A file larger than files.max_upload_mb: the message stays in the box with the file
    named and the limit said (it was an alert, and the message went without the file)."""
    upload = tmp_path / "video.bin"
    upload.write_bytes(b"x" * (world.max_upload_bytes + 1_000_000))
    page = Page(driver, world).open()
    page.new_session("big")
    page.el("#files").send_keys(str(upload))
    wait_for(lambda: "video.bin" in page.el("#attachments").text, what="chip")
    page.el("#text").send_keys("see attached")
    page.el("#send").click()
    wait_for(lambda: "video.bin is 2" in page.el("#problem").text, what="the file named")
    assert "the limit is 1 MB per file" in page.el("#problem").text
    assert page.el("#text").get_attribute("value") == "see attached"
    assert "video.bin" in page.el("#attachments").text and not page.els("li.pending")
    assert world.core is not None and world.core.received == []


def test_the_refused_messages_a_page_keeps_are_bounded_and_of_threads_that_exist(driver: Any, world: WebWorld) -> None:
    """Refused messages wait in the browser for "Edit again": the newest 20, and none of
    a thread the history no longer holds (it could never be shown, nor taken back)."""
    page = Page(driver, world).open()
    kept = [[f"refused-{i:04d}", {"message": {"type": "post", "id": f"refused-{i:04d}", "thread": None,
                                              "text": f"words {i}", "files": []}, "reason": "too long"}]
            for i in range(25)]  # fmt: skip
    gone = ["refused-gone", {"message": {"type": "post", "id": "refused-gone", "thread": "webt-gone",
                                         "text": "lost", "files": []}, "reason": "too long"}]  # fmt: skip
    page.store_old_list("refused", [gone, *kept])
    driver.refresh()
    page.wait_connected()
    stored = sorted(page.stored("refused"), key=lambda entry: entry["at"])
    assert [entry["message"]["id"] for entry in stored] == [f"refused-{i:04d}" for i in range(5, 25)]
    assert "words 24" in page.texts("li.refused")[-1]


def test_a_message_refused_by_a_locked_database_comes_back_with_its_files_on_edit_again(
    driver: Any, world: WebWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BUSY_TRIES", 1)  # refused after SQLite's own wait
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n" * 10)
    page = Page(driver, world).open()
    page.new_session("locked")
    # The file is uploaded; then, before its message is sent, another program takes the
    # database (a sqlite3 shell left in a transaction) and holds it until the refusal.
    page.hold_next_upload()
    page.el("#files").send_keys(str(upload))
    page.send("see attached")
    wait_for(lambda: page.d.execute_script("return window.uploaded === true"), what="uploaded")
    other = sqlite3.connect(world.state_dir / "web.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        page.d.execute_script("window.sendNow()")
        wait_for(lambda: page.els("li.refused"), 20, what="the refused message shown")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "send it again" in page.texts("li.refused")[0]

    page.el("li.refused button.again").click()  # its words and its file back
    assert page.el("#text").get_attribute("value") == "see attached"
    assert "notes.txt" in page.el("#attachments").text
    page.el("#send").click()

    page.wait_text("received notes.txt: 200 bytes")
    assert world.core is not None and world.core.received == [("notes.txt", upload.read_bytes())]


def test_an_upload_refused_while_connected_is_tried_again_and_its_message_goes(
    driver: Any, world: WebWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store, "BUSY_TRIES", 1)  # refused after SQLite's own wait
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    page = Page(driver, world).open()
    page.new_session("busy-upload")
    # Another program holds the database: the upload is refused (503), the page stays
    # connected, and nothing else would make it send the message again.
    other = sqlite3.connect(world.state_dir / "web.sqlite3", isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        page.el("#files").send_keys(str(upload))
        page.send("see attached")
        wait_for(lambda: "trying again" in page.el("#problem").text, 20, what="the wait said")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "locked by another program" in page.el("#problem").text and page.els("li.pending")

    page.wait_text("received notes.txt: 20 bytes", timeout=20)
    assert not page.el("#problem").is_displayed() and not page.els("li.pending")
    assert page.el("#connection").text == "connected"


def test_a_page_whose_token_the_supervisor_no_longer_accepts_says_to_open_the_new_address(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    world.down()
    (world.state_dir / "web-token").unlink()  # as a fresh state directory would
    world.up()  # with a new token: this page's cookie is refused

    wait_for(lambda: "open the address it printed" in page.el("#problem").text, 15, what="said")
    assert page.el("#connection").text == "reconnecting…"
    page.open()  # the address printed now
    assert not page.el("#problem").is_displayed()


def test_a_page_that_knew_a_history_since_removed_shows_the_new_one_alone(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("forgotten")
    world.down()
    for name in ("web.sqlite3", "web.sqlite3-wal", "web.sqlite3-shm"):
        (world.state_dir / name).unlink(missing_ok=True)  # the history removed, the token kept
    world.up()

    wait_for(lambda: page.texts("#threads button") == ["Commands"], 15, what="the old session gone")
    page.wait_connected()
    page.send("!help")
    page.wait_text("Commands: ")


def test_a_session_name_with_a_space_is_stopped_in_the_form_saying_what_a_name_is(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.el("#new-toggle").click()
    page.el("#new-name").send_keys("my project")
    page.el("#new-session button[type=submit]").click()

    said = page.el("#new-name").get_attribute("validationMessage")
    assert "one word" in said and "no spaces" in said
    assert page.texts("#threads button") == ["Commands"]
    page.el("#new-name").clear()
    page.el("#new-name").send_keys("my-project")  # mended: the form goes
    page.el("#new-session button[type=submit]").click()
    wait_for(lambda: page.el("#thread-title").text == "my-project", what="the session")


def test_a_message_whose_files_a_closed_page_never_uploaded_is_not_sent_without_them(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    page = Page(driver, world).open()
    page.new_session("offline")
    world.down()
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    page.el("#files").send_keys(str(upload))
    page.send("see attached")
    assert page.els("li.pending")  # waiting; its file is in this page's memory only
    driver.get("about:blank")  # the page is closed before the supervisor is back
    world.up()

    page.open()
    wait_for(lambda: page.els("li.refused"), what="the message held back")
    assert "Not sent: the page was closed before its files were uploaded (attach its file again)" in (
        page.texts("li.refused")[0]
    )
    assert page.stored("outbox") == []
    page.el("li.refused button.again").click()
    assert page.el("#text").get_attribute("value") == "see attached"
    assert world.core is not None and world.core.prompts_seen == []  # never sent without it


@pytest.mark.slow
def test_reload_mid_stream_shows_everything_so_far_and_keeps_streaming(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("reload")
    page.send("long 120")
    wait_for(lambda: "word20 " in page.last_bot(), what="streaming")
    driver.refresh()
    page.wait_connected()

    wait_for(lambda: "word20 " in page.last_bot(), 5, what="text so far after reload")
    before = len(page.last_bot())
    wait_for(lambda: len(page.last_bot()) > before, 5, what="still growing")
    page.wait_text("Done", timeout=20)
    assert "word119" in page.last_bot()
    assert page.el("#thread-title").text == "reload"


def test_two_tabs_show_the_same_thread_live(driver: Any, world: WebWorld) -> None:
    page = Page(driver, world).open()
    page.new_session("shared")
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    try:
        other = Page(driver, world).open()
        wait_for(lambda: other.el("#thread-title").text == "shared", what="same selection")
        driver.switch_to.window(first)
        page.send("long 60")
        driver.switch_to.window(driver.window_handles[-1])
        wait_for(lambda: "word5 " in other.last_bot(), what="second tab streaming")
        assert "Done" not in other.last_bot()
        other.wait_text("Done", timeout=20)
        assert "long 60" in other.texts("#messages > li.user")
    finally:
        driver.close()
        driver.switch_to.window(first)


def test_two_tabs_queue_while_the_supervisor_is_down_and_each_message_arrives_once(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    """The tabs of one browser share its stored outbox. One tab's save overwrote the
    entries another had queued (lost once that tab closed); and a tab loaded while
    another still uploaded a message's file refused that message as left by a closed page."""
    page = Page(driver, world).open()
    page.new_session("tabs")
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    second = driver.current_window_handle
    other = Page(driver, world).open()
    wait_for(lambda: other.el("#thread-title").text == "tabs", what="same selection")
    world.down()
    wait_for(lambda: other.el("#connection").text == "reconnecting…", what="seen down")
    driver.switch_to.window(first)
    page.send("from the first tab")
    driver.switch_to.window(second)
    other.send("from the second tab")
    driver.switch_to.window(first)
    driver.close()  # the first tab is closed before the supervisor is back
    driver.switch_to.window(second)
    world.up()

    other.wait_text("You said: from the first tab", timeout=15)
    other.wait_text("You said: from the second tab", timeout=15)
    time.sleep(1.0)  # any second delivery would show by now
    assert world.core is not None
    assert world.core.prompts_seen == ["from the first tab", "from the second tab"]
    assert other.stored("outbox") == []

    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    other.hold_next_upload()
    other.el("#files").send_keys(str(upload))
    other.send("see attached")
    wait_for(lambda: other.d.execute_script("return window.uploaded === true"), what="uploaded")
    driver.switch_to.new_window("tab")  # opened while the second tab's message waits for its file
    try:
        third = Page(driver, world).open()
        time.sleep(0.5)  # a refusal of the message would show by now
        assert not third.els("li.refused")
        driver.switch_to.window(second)
        other.d.execute_script("window.sendNow()")
        other.wait_text("received notes.txt: 20 bytes")
        assert world.core.received == [("notes.txt", upload.read_bytes())]
        assert not other.els("li.refused") and other.stored("refused") == []
    finally:
        driver.switch_to.window(driver.window_handles[-1])
        driver.close()
        driver.switch_to.window(second)


@pytest.mark.slow
def test_restart_the_page_reconnects_history_whole_and_a_message_typed_while_down_once(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("durable")
    page.send("before the restart")
    page.wait_text("You said: before the restart")
    page.wait_text("Done")

    world.down()
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    page.send("typed while down")
    assert page.els("li.pending")  # shown, waiting for its ack
    time.sleep(0.5)
    world.up()
    page.wait_connected()

    page.wait_text("You said: typed while down", timeout=15)
    time.sleep(1.0)  # any second delivery would show by now
    assert world.core is not None and world.core.prompts_seen == ["typed while down"]
    users = page.texts("#messages > li.user")
    assert users == ["before the restart", "typed while down"]
    assert not page.els("li.pending")
    assert sum("You said: before the restart" in t for t in page.bot_texts()) == 1
    driver.refresh()
    page.wait_connected()
    page.wait_text("You said: typed while down")
    assert page.texts("#messages > li.user") == users


def test_a_page_that_hears_nothing_for_its_silence_bound_reconnects_and_a_kept_alive_one_does_not(
    driver: Any, world: WebWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A path that died without a close (Wi-Fi gone, a VPN re-keyed) left the page saying
    "connected" for minutes while what was typed waited unsaid. The server now speaks on a
    quiet connection, and a page that hears nothing for its bound connects again."""
    monkeypatch.setattr(asgi, "KEEPALIVE_S", 0.3)
    with timing(driver, silenceMs=1500):
        page = Page(driver, world).open()
    page.new_session("quiet")
    page.watch_connection()
    time.sleep(3.5)  # more than twice the bound, in which the page hears only keepalives
    assert "reconnecting…" not in page.connection_seen()

    monkeypatch.setattr(asgi, "KEEPALIVE_S", 60.0)  # now the server stays silent
    wait_for(lambda: "reconnecting…" in page.connection_seen(), 10, what="the silence said")
    monkeypatch.setattr(asgi, "KEEPALIVE_S", 0.3)
    page.wait_connected()
    page.send("after the silence")
    page.wait_text("You said: after the silence")
    assert world.core is not None and world.core.prompts_seen == ["after the silence"]


def test_a_page_reconnects_at_once_when_the_network_comes_back(driver: Any, world: WebWorld) -> None:
    page = Page(driver, world).open()
    page.watch_connection()
    driver.execute_script("window.dispatchEvent(new Event('online'))")
    wait_for(lambda: "reconnecting…" in page.connection_seen(), 5, what="reconnected")
    page.wait_connected()


def test_an_upload_that_gets_no_answer_fails_after_its_time_and_is_tried_again(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    """An upload over a dead path waited for ever, and every message behind it too."""
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    with timing(driver, uploadBaseMs=1000):
        page = Page(driver, world).open()
    page.new_session("slow-upload")
    # The next upload never answers; it ends only if the page aborts it.
    driver.execute_script("""
        const upload = window.fetch;
        window.fetch = (url, options) => {
          window.fetch = upload; // this upload only
          return new Promise((_, reject) => {
            if (options && options.signal) options.signal.addEventListener("abort", () => reject(options.signal.reason));
          });
        };""")
    page.el("#files").send_keys(str(upload))
    page.send("see attached")
    wait_for(lambda: "no answer in 1 s" in page.el("#problem").text, 10, what="the wait said")
    page.wait_text("received notes.txt: 20 bytes", timeout=15)
    assert world.core is not None and world.core.received == [("notes.txt", upload.read_bytes())]
    assert not page.els("li.pending")


def test_a_page_back_from_a_busy_day_fetches_its_threads_anew_and_marks_the_others_unread(
    driver: Any, world: WebWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A welcome carries the messages of the threads the page holds, up to a bound: past
    it, the page drops what it holds of them and fetches them anew, losing none."""
    monkeypatch.setattr(asgi, "WELCOME_MESSAGES", 5)
    asked: list[Any] = []  # the threads each hello said the page holds
    changes_since = WebDb.changes_since

    def recorded(db: WebDb, since: int, held: Any = None, most: Any = None) -> Any:
        asked.append(held)
        return changes_since(db, since, held, most)

    monkeypatch.setattr(WebDb, "changes_since", recorded)
    page = Page(driver, world).open()
    page.new_session("other")
    page.new_session("held")
    held = page.thread_button("held").get_attribute("data-thread")
    other = page.thread_button("other").get_attribute("data-thread")
    world.down()
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    db = WebDb(world.state_dir / "web.sqlite3")  # what the core wrote meanwhile
    for n in range(10):
        db.create(held, "bot", "text", f"while away {n}", key=f"h{n}")
    db.create(other, "bot", "text", "other news", key="o0")
    db.close()
    world.up()

    page.wait_text("while away 9", timeout=15)
    assert set(asked[-1]) == {"main", held, other}
    assert [t for t in page.bot_texts() if t.startswith("while away")] == [f"while away {n}" for n in range(10)]
    name = page.thread_button("other").find_element(page.by.CSS_SELECTOR, ".name")
    assert "unread" in name.get_attribute("class")
    page.thread_button("other").click()
    page.wait_text("other news")


def test_without_the_token_the_browser_gets_401_and_no_page(driver: Any, world: WebWorld) -> None:
    driver.get(world.base + "/")

    body = driver.find_element("tag name", "body").text
    assert body.startswith("401 Unauthorized")
    assert not driver.find_elements("css selector", "#threads")


class _EvilPage(http.server.BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        html = (
            "<!doctype html><title>waiting</title><script>"
            f"const ws = new WebSocket('ws://{self.target}/ws');"
            "ws.onopen = () => { document.title = 'opened'; };"
            "ws.onclose = (e) => { if (document.title !== 'opened') document.title = 'refused'; };"
            "</script>"
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(html)))
        self.end_headers()
        self.wfile.write(html)

    def log_message(self, *args: object) -> None:
        pass


def test_a_page_from_another_origin_cannot_open_the_websocket(
    driver: Any, world: WebWorld
) -> None:
    # Same site (127.0.0.1, another port), so the browser even sends the cookie: only the
    # Origin check stands between that page and the sessions.
    Page(driver, world).open()
    handler = type("Evil", (_EvilPage,), {"target": f"127.0.0.1:{world.port}"})
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=evil.serve_forever, daemon=True)
    thread.start()
    try:
        driver.get(f"http://127.0.0.1:{evil.server_address[1]}/")
        title = wait_for(lambda: driver.title if driver.title != "waiting" else "", what="result")
    finally:
        evil.shutdown()
        evil.server_close()
        thread.join(5)

    assert title == "refused"


def test_a_stop_left_unsent_for_minutes_is_dropped_not_sent_into_a_later_turn(driver: Any, world: WebWorld) -> None:
    """Pressed while the connection was down, its tab then closed: a tab opened later
    adopts its outbox, but that Stop was for a turn long over and would cut the one
    running now. It is dropped, and the page says so."""
    page = Page(driver, world).open()
    page.new_session("late-stop")
    page.send("long 60")
    wait_for(lambda: "word5 " in page.last_bot() + " ", what="streaming")
    driver.execute_script(
        "const thread = localStorage.getItem('supervisor-selected');"
        "const message = {type: 'stop', id: 'old-stop-0001', thread, queued: Date.now() - 120000};"
        "localStorage.setItem(arguments[0] + 'old-stop-0001', JSON.stringify({owner: 'a-closed-tab', message}));",
        f"supervisor-outbox-{world.port}/",
    )
    driver.refresh()
    page.wait_connected()
    wait_for(lambda: "Stop pressed while the connection was down" in page.el("#problem").text, what="said")
    wait_for(lambda: "Done" in page.last_bot(), 20, what="the turn, whole")
    assert "word59" in page.last_bot() and page.stored("outbox") == []


def test_hostile_answers_and_file_names_render_as_text_and_run_nothing(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    hostile_name = tmp_path / "<img src=x onerror=window.__pwned=7>.txt"
    hostile_name.write_text("x")
    page = Page(driver, world).open()
    page.new_session("hostile")
    page.send("hostile")
    page.wait_text("raw link")
    page.send("<script>window.__pwned=8</script><img src=y onerror=window.__pwned=9>")
    page.el("#files").send_keys(str(hostile_name))
    page.send("file")
    page.wait_text("received <img src=x onerror=window.__pwned=7>.txt")
    time.sleep(0.3)

    assert driver.execute_script("return window.__pwned === undefined")
    messages = page.el("#messages")
    dangerous = driver.execute_script(
        "return Array.from(document.querySelectorAll("
        "'#messages :is(script, iframe, svg, object, embed, [onerror], [onload])'), e => e.outerHTML)"
    )
    assert dangerous == []
    hrefs = [a.get_attribute("href") or "" for a in messages.find_elements(page.by.TAG_NAME, "a")]
    assert not [h for h in hrefs if h.lower().startswith("javascript")]
    file_link = page.el("li.user .files a")
    assert "onerror" in file_link.text  # shown as text
    for link in messages.find_elements(page.by.PARTIAL_LINK_TEXT, "click me"):
        link.click()
    time.sleep(0.2)
    assert driver.execute_script("return window.__pwned === undefined")


def test_an_answer_with_the_ids_of_the_pages_own_elements_leaves_the_composer_working(
    driver: Any, world: WebWorld
) -> None:
    """Markdown may carry raw HTML with ids (an agent's, or the person's own text): with the
    composer's id, such an element above it was found instead, and nothing more could be
    sent from the page in that thread."""
    page = Page(driver, world).open()
    page.new_session("clobber")
    page.send('<div id="text">shadow</div><div id="stop">s</div><a name="problem">p</a> named')
    page.wait_text("named")
    assert driver.execute_script("return document.querySelectorAll('#messages [id], #messages [name]').length") == 0
    page.send("!status")
    page.wait_text("turns:")


def test_keyboard_alone_creates_a_session_prompts_and_answers_a_card(
    driver: Any, world: WebWorld
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    page = Page(driver, world).open()
    keys = ActionChains(driver)

    def focused() -> str:
        return str(driver.switch_to.active_element.get_attribute("id") or "")

    def tab_to(element_id: str) -> None:
        for _ in range(30):
            if focused() == element_id:
                return
            keys.send_keys(Keys.TAB).perform()
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("new-toggle")
    keys.send_keys(Keys.ENTER).perform()
    wait_for(lambda: focused() == "new-name", what="form focused")
    keys.send_keys("keys", Keys.ENTER).perform()
    wait_for(lambda: page.el("#thread-title").text == "keys", what="session by keyboard")
    tab_to("text")
    keys.send_keys("run pwd", Keys.ENTER).perform()
    wait_for(lambda: page.els("li.choice button"), what="card")
    tab_to("")  # onto the card's first button (buttons have no id)
    for _ in range(10):
        if driver.switch_to.active_element.get_attribute("data-option") == "allow_once":
            break
        keys.send_keys(Keys.TAB).perform()
    keys.send_keys(Keys.ENTER).perform()

    page.wait_text("Ran pwd")
    assert world.core is not None and world.core.ran == ["pwd"]


def test_phone_width_collapses_the_sidebar_and_keeps_thread_and_composer_usable(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("phone", "/home/me/project")
    page.send("markdown")
    page.wait_text("That is all.")
    page.send("run make")
    wait_for(lambda: page.els("li.choice button"), what="card")
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "web-chat-desktop.png"))
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True},
    )
    try:
        driver.refresh()
        page.wait_connected()
        page.wait_text("That is all.")
        assert not page.el("#sidebar").is_displayed()
        assert page.el("#menu").is_displayed()
        width = driver.execute_script("return document.documentElement.scrollWidth")
        assert width <= 390  # nothing sticks out sideways
        composer = page.el("#text").rect
        assert composer["x"] >= 0 and composer["x"] + composer["width"] <= 390
        driver.save_screenshot(str(ARTIFACTS / "web-chat-phone.png"))
        page.el("#menu").click()
        page.wait_sidebar_in_place()
        page.thread_button("Commands").click()
        wait_for(lambda: not page.el("#sidebar").is_displayed(), what="sidebar closes")
        page.send("!help")
        page.wait_text("Commands: !new NAME")
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def test_a_long_thread_opens_on_its_newest_messages_and_shows_earlier_ones_on_demand(
    driver: Any, world: WebWorld
) -> None:
    from supervisor.chat.web.db import WebDb

    db = WebDb(world.state_dir / "web.sqlite3")  # a second writer: WAL allows it
    thread = db.open_thread("long", "long", "claude", "~")
    for i in range(250):
        db.create(thread.id, "bot", "text", f"message **{i}**", key=f"m{i}")
    db.close()
    page = Page(driver, world).open()
    wait_for(lambda: page.els(f"button[data-thread='{thread.id}']"), what="listed")[0].click()

    wait_for(lambda: page.texts("#messages > li.bot")[-1:] == ["message 249"], what="newest")
    assert len(page.els("#messages > li.bot")) == 100
    page.el("li.earlier button").click()
    wait_for(lambda: len(page.els("#messages > li.bot")) == 200, what="one more page")
    page.el("li.earlier button").click()
    wait_for(lambda: len(page.els("#messages > li.bot")) == 250, what="all")
    assert not page.els("li.earlier")
    assert page.texts("#messages > li.bot")[0] == "message 0"


def test_selecting_a_thread_says_open_each_time_and_after_a_restart(
    driver: Any, world: WebWorld
) -> None:
    """"open" wakes a suspended session's agent ahead of the prompt. The page said it only
    for a thread it had not loaded: going back to one, or the one shown when the page
    reconnected after a restart, left the agent to start on the prompt."""
    page = Page(driver, world).open()
    page.new_session("first")
    page.new_session("second")
    first = page.thread_button("first").get_attribute("data-thread")
    second = page.thread_button("second").get_attribute("data-thread")
    for name in ("first", "second", "first"):  # each loaded already
        page.thread_button(name).click()
        wait_for(lambda name=name: page.el("#thread-title").text == name, what=f"{name} shown")
    assert world.core is not None
    wait_for(lambda: world.core.opened == [first, second, first, second, first], what="each said")

    world.restart()  # a fresh stand-in core: what the page says on reconnecting
    page.wait_connected()
    wait_for(lambda: world.core is not None and world.core.opened == [first], what="said again")
    assert page.el("#thread-title").text == "first"


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_history_whole_and_a_message_typed_while_down_once(
    driver: Any, tmp_path: Path
) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as probe:  # a free port both processes will use
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state, prompts = tmp_path / "state", tmp_path / "prompts.log"
    root = Path(__file__).resolve().parent.parent

    def start() -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.web_serve_process", str(state), str(port), str(prompts)],
            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert process.stdout is not None
        return process, process.stdout.readline().strip()

    first, url = start()
    second = None
    try:
        world = WebWorld(state)  # only for its url/port conveniences; not started
        world.port = port
        page = Page(driver, world)
        driver.get(url)
        page.wait_connected()
        page.new_session("survivor")
        page.send("long 400")
        wait_for(lambda: "word30 " in page.last_bot(), what="streaming")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
        streamed = page.last_bot()
        page.send("typed while down")
        second, url_again = start()
        assert url_again == url  # same token, same port: the page needs nothing new
        page.wait_connected()
        page.wait_text("You said: typed while down", timeout=20)
        time.sleep(1.0)

        lines = prompts.read_text().splitlines()
        assert lines.count("typed while down") == 1 and lines.count("long 400") == 1
        assert page.texts("#messages > li.user") == ["long 400", "typed while down"]
        cut = [t for t in page.bot_texts() if "word30 " in t]
        assert len(cut) == 1 and cut[0].startswith(streamed[:200])  # what showed is kept
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
            if process is not None and process.stdout is not None:
                process.stdout.close()


def test_a_notice_such_as_a_missing_agent_is_shown_plainly_as_text(
    driver: Any, tmp_path: Path
) -> None:
    notice = "<b>claude</b> was not found on PATH: install it with npm install -g @anthropic-ai/claude-code"
    world = WebWorld(tmp_path / "state", notice=notice).start()
    try:
        page = Page(driver, world).open()
        banner = wait_for(lambda: page.el("#notice").is_displayed() and page.el("#notice"), what="notice")
        assert banner.text == notice  # the markup shows as text
        assert not banner.find_elements(page.by.TAG_NAME, "b")
        options = [o.get_attribute("textContent") for o in page.els("#new-agent option")]
        assert options == ["(default agent)", "claude", "opencode"]
        personas = [o.get_attribute("textContent") for o in page.els("#new-persona option")]
        assert personas == ["(none)", "reviewer", "porter"]
        # A persona that names its own agent: the blank choice is that agent.
        from selenium.webdriver.support.select import Select

        page.el("#new-toggle").click()
        Select(page.el("#new-persona")).select_by_value("porter")
        assert page.el("#new-agent option").get_attribute("textContent") == "opencode (default)"
        Select(page.el("#new-persona")).select_by_value("reviewer")
        assert page.el("#new-agent option").get_attribute("textContent") == "(default agent)"
    finally:
        world.close()


def test_a_file_the_core_sends_is_a_download_link_that_serves_its_bytes(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.new_session("download")
    page.send("get report.txt")
    link = wait_for(lambda: page.els("li.bot.file .files a"), what="file link")[0]

    assert link.text.endswith("report.txt")
    body = driver.execute_async_script(
        "const done = arguments[1];"
        "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done);",
        link.get_attribute("href"),
    )
    assert body == "contents of report.txt\n"


def test_half_an_emoji_is_delivered_as_a_replacement_and_what_follows_arrives(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.d.execute_script("document.getElementById('text').value = 'broken \\ud83d end'")
    page.el("#send").click()
    page.send("!help")
    page.wait_text("Commands: ")

    assert page.el("#connection").text == "connected"
    assert page.texts("#messages > li.user") == ["broken \ufffd end", "!help"]
    assert not page.els("li.pending")


def test_a_message_over_the_limits_stays_in_the_box_and_a_refused_one_leaves_the_queue(
    driver: Any, world: WebWorld
) -> None:
    page = Page(driver, world).open()
    page.d.execute_script("document.getElementById('text').value = 'x'.repeat(200001)")
    page.el("#send").click()
    assert "the limit is 200,000" in page.el("#problem").text
    assert len(page.el("#text").get_attribute("value")) == 200_001  # kept, to be shortened
    assert not page.els("li.pending")

    # A queue the server will never take (as pages before the limits were checked kept
    # one): it is refused once, shown with its reason, and never sent again.
    too_many = [f"webf{i:02d}" for i in range(21)]
    page.store_old_list("outbox", [{"type": "post", "id": "stuck-message-0001", "thread": None, "text": "stuck", "files": too_many}])
    driver.refresh()
    page.wait_connected()
    wait_for(lambda: page.els("li.refused"), what="the refused message shown")
    # Its files were chosen before a reload: the page no longer holds them, and says so.
    assert "Not sent: 21 files attached; the limit is 20 per message (attach its 21 files again)" in page.texts("li.refused")[0]
    assert page.stored("outbox") == []
    driver.refresh()  # a reload before "Edit again" keeps the words
    page.wait_connected()
    assert "Not sent: 21 files attached" in page.texts("li.refused")[0]
    page.el("li.refused button.again").click()  # its words back in the box, the entry gone
    assert page.el("#text").get_attribute("value") == "stuck" and not page.els("li.refused")
    driver.refresh()
    page.wait_connected()
    assert not page.els("li.refused")  # gone for good once taken back
    page.d.execute_script("document.getElementById('text').value = ''")
    page.send("!help")
    page.wait_text("Commands: ")
    assert not page.els("li.pending")


def test_a_file_the_server_refuses_after_its_message_was_queued_refuses_the_message(
    driver: Any, tmp_path: Path
) -> None:
    """The limit lowered while a message waited (queued with the supervisor down): the
    message is refused with the file named, its file kept for "Edit again", never sent
    without it."""
    upload = tmp_path / "video.bin"
    upload.write_bytes(b"x" * 6_000_000)  # under the 10 MB it is queued against
    world = WebWorld(tmp_path / "state", max_upload_bytes=10_000_000).start()
    try:
        page = Page(driver, world).open()
        page.new_session("lowered")
        world.down()
        wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
        page.el("#files").send_keys(str(upload))
        wait_for(lambda: "video.bin" in page.el("#attachments").text, what="chip")
        page.send("see attached")
        assert page.els("li.pending")
        world.max_upload_bytes = 1_000_000
        world.up()

        refusal = wait_for(lambda: page.texts("li.refused"), 15, what="the message refused")[0]
        # In the words the composer uses, not the server's "413 ..." line.
        assert refusal.startswith("see attached\nNot sent: video.bin is 6 MB; the limit is 1 MB per file (files.max_upload_mb) "), refusal
        assert not page.els("li.pending") and page.el("#connection").text == "connected"
        page.el("li.refused button.again").click()  # its words and its file back
        assert page.el("#text").get_attribute("value") == "see attached"
        assert "video.bin" in page.el("#attachments").text
        page.el("#send").click()  # the page now knows the lower limit: kept in the box
        wait_for(lambda: "the limit is 1 MB per file" in page.el("#problem").text, what="said")
        assert world.core is not None and world.core.prompts_seen == []
    finally:
        world.close()


def test_a_file_over_a_lowered_limit_whose_413_is_lost_is_refused_once_and_the_next_message_goes(
    driver: Any, tmp_path: Path
) -> None:
    """The server answers 413 before it reads the body, then closes the connection with
    the rest unread: a browser that sees only the reset (a TCP stack that drops what it
    received) took that for a passing failure, and uploaded the file again and again, its
    message pending for ever. The page now refuses it against the welcome's limit, once."""
    upload = tmp_path / "video.bin"
    upload.write_bytes(b"x" * 6_000_000)
    world = WebWorld(tmp_path / "state", max_upload_bytes=10_000_000).start()
    try:
        page = Page(driver, world).open()
        page.new_session("reset")
        # Every upload ends as one whose connection was reset: no answer at all.
        page.d.execute_script("""
            const fetchFirst = window.fetch;
            window.uploads = 0;
            window.fetch = (url, ...rest) => {
              if (!String(url).startsWith("/api/files")) return fetchFirst(url, ...rest);
              window.uploads += 1;
              return Promise.reject(new TypeError("Failed to fetch"));
            };""")
        world.down()
        wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
        page.el("#files").send_keys(str(upload))
        wait_for(lambda: "video.bin" in page.el("#attachments").text, what="chip")
        page.send("see attached")
        world.max_upload_bytes = 1_000_000
        world.up()

        refusal = wait_for(lambda: page.texts("li.refused"), 15, what="the message refused")[0]
        assert refusal.startswith("see attached\nNot sent: video.bin is 6 MB; the limit is 1 MB per file (files.max_upload_mb) "), refusal
        page.send("after the refusal")
        page.wait_text("You said: after the refusal")
        time.sleep(2.5)  # the page's first retry (UPLOAD_RETRY_MS) would have come by now
        assert page.d.execute_script("return window.uploads") == 0
        assert len(page.els("li.refused")) == 1 and not page.els("li.pending")
        assert not page.el("#problem").is_displayed()
        assert world.core is not None and world.core.prompts_seen == ["after the refusal"]
    finally:
        world.close()


def test_a_file_deleted_after_it_was_chosen_refuses_its_message_and_the_next_one_goes(
    driver: Any, world: WebWorld, tmp_path: Path
) -> None:
    """The browser refuses to upload a file changed or deleted since it was chosen, at
    every try ("Failed to fetch"): its message was tried again for ever, and every later
    one of the page waited behind it until a reload. It is now refused, the file named."""
    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    page = Page(driver, world).open()
    page.new_session("deleted")
    page.el("#files").send_keys(str(upload))
    wait_for(lambda: "notes.txt" in page.el("#attachments").text, what="chip")
    upload.unlink()
    page.send("see attached")
    page.send("after the deletion")

    page.wait_text("You said: after the deletion")
    refusal = wait_for(lambda: page.texts("li.refused"), what="the message refused")[0]
    assert refusal.startswith("see attached\nNot sent: notes.txt can no longer be read"), refusal
    assert "attach it again" in refusal and not page.els("li.pending")
    assert world.core is not None and world.core.prompts_seen == ["after the deletion"]
    page.el("li.refused button.again").click()  # its words back, not the lost file
    assert page.el("#text").get_attribute("value") == "see attached"
    assert "notes.txt" not in page.el("#attachments").text


def test_a_new_session_refused_for_a_taken_name_never_takes_the_view_later(
    driver: Any, world: WebWorld
) -> None:
    """The form's wait for its session outlived a refused `!new` (the name taken by a live
    session): the next change of that session's thread selected it, the view jumped away
    from what the person was reading, and Enter sent into the wrong session."""
    page = Page(driver, world).open()
    page.new_session("foo")
    page.new_session("other")
    foo, other = (wait_for(lambda n=n: page.thread_button(n).get_attribute("data-thread")) for n in ("foo", "other"))
    page.el("#new-toggle").click()
    page.el("#new-name").send_keys("foo")
    page.el("#new-session button[type=submit]").click()
    # Clicked by script: the sidebar is drawn anew at each update (no stale element).
    click = "document.querySelector(`#threads button[data-thread='${arguments[0]}']`).click()"
    page.d.execute_script(click, "main")
    page.wait_text("A session named foo already runs.")
    page.d.execute_script(click, other)
    wait_for(lambda: page.el("#thread-title").text == "other", what="other shown")

    async def suspend() -> None:
        assert world.chat is not None
        await world.chat.front.update_thread(ThreadRef(WEB_PLACE, foo), state="suspended")

    world.call(suspend)
    wait_for(lambda: "suspended" in page.thread_button("foo").text, what="foo suspended")
    assert page.el("#thread-title").text == "other"


def test_on_a_phone_the_empty_commands_thread_says_how_to_start_a_session(
    driver: Any, world: WebWorld, phone: None
) -> None:
    """A first start showed a blank page: the sessions' list (with "+ New session") is
    behind ☰ and the header's command hint is hidden at this width."""
    page = Page(driver, world).open()
    hint = wait_for(lambda: page.texts("li.first-steps"), what="the first steps")[0]
    assert "+ New session" in hint and "☰" in hint and "!new NAME DIRECTORY" in hint
    assert page.el("li.first-steps").is_displayed()
    page.send("!help")
    page.wait_text("Commands: ")
    assert not page.els("li.first-steps")  # a thread with messages needs no hint
    driver.refresh()
    page.wait_connected()
    page.wait_text("Commands: ")
    assert not page.els("li.first-steps")


def test_on_a_phone_enter_starts_a_new_line_and_send_sends(
    driver: Any, world: WebWorld, phone: None
) -> None:
    """A phone's keyboard has no Shift+Enter: Enter sent the message, so no prompt could
    have two lines."""
    from selenium.webdriver.common.keys import Keys

    page = Page(driver, world).open()
    page.new_session("thumbs")
    assert page.el("#text").get_attribute("placeholder") == "Message"
    page.el("#text").send_keys("first line", Keys.ENTER, "second line")
    time.sleep(0.3)  # a message sent would be shown by now
    assert page.el("#text").get_attribute("value") == "first line\nsecond line"
    assert not page.els("#messages > li.user")
    page.el("#send").click()
    page.wait_text("You said: first line")
    assert page.texts("#messages > li.user") == ["first line\nsecond line"]


def test_on_a_phone_a_tap_beside_the_open_sidebar_closes_it(
    driver: Any, world: WebWorld, phone: None
) -> None:
    page = Page(driver, world).open()
    page.el("#menu").click()
    page.wait_sidebar_in_place()
    page.tap(375, 400)  # the strip of thread the sidebar leaves uncovered

    wait_for(lambda: not page.el("#sidebar").is_displayed(), what="sidebar closed")
    assert page.el("#menu").get_attribute("aria-expanded") == "false"


def test_on_a_phone_a_long_file_name_does_not_widen_the_page(
    driver: Any, world: WebWorld, phone: None, tmp_path: Path
) -> None:
    """A chip with a long name made the whole page scroll sideways, the composer half off
    the screen."""
    upload = tmp_path / ("scan_" + "0123456789" * 12 + ".pdf")
    upload.write_bytes(b"%PDF-1.4\n")
    page = Page(driver, world).open()
    page.el("#files").send_keys(str(upload))
    wait_for(lambda: "scan_" in page.el("#attachments").text, what="chip")

    assert driver.execute_script("return document.documentElement.scrollWidth") <= 390
    remove = page.el("#attachments button").rect
    assert remove["x"] + remove["width"] <= 390  # its × can be reached



def test_on_a_phone_every_button_fits_a_finger_and_text_fields_do_not_zoom_the_page(
    driver: Any, world: WebWorld, phone: None
) -> None:
    """Buttons were sized for a mouse (the × of a file chip had no padding at all, a
    request's Allow and Deny about 30 px tall), and text at 15 px makes iOS Safari zoom the
    whole page in whenever the message box takes focus."""
    page = Page(driver, world).open()
    page.new_session("fingers")
    page.send("run ls")
    wait_for(lambda: page.els("li.choice:last-child button"), what="card")
    sizes = driver.execute_script(
        "return [...document.querySelectorAll('button, .attach')]"
        ".filter(e => e.checkVisibility({visibilityProperty: true}))"
        ".map(e => { const r = e.getBoundingClientRect();"
        " return [e.id || e.textContent.trim(), Math.round(r.width), Math.round(r.height)]; })"
    )
    assert len(sizes) >= 5 and all(w >= 44 and h >= 44 for _, w, h in sizes), sizes
    fonts = driver.execute_script(
        "return [...document.querySelectorAll('input:not([type=file]), select, textarea')]"
        ".map(e => getComputedStyle(e).fontSize)"
    )
    assert fonts and set(fonts) == {"16px"}, fonts
    page.el("#menu").click()
    page.wait_sidebar_in_place()
    top_bar, sidebar = page.el(".topbar").rect, page.el("#sidebar").rect
    assert sidebar["y"] >= top_bar["y"] + top_bar["height"] - 1  # below the bar, not over ☰
