"""The web chat as the supervisor's front end, in a real headless Chromium.

Unlike test_web_browser.py (the page against a stand-in core), these drive the whole
product: `python -m supervisor run` with no configuration file at all (the embedded
default), a fake `claude` first on PATH (tests/fakes/fake_agent.py), real agent
processes, the real core. Issue 14's acceptance 1-3, in that order.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.reposts import nothing_to_post_again
from tests.test_web_browser import ARTIFACTS, Page
from tests.web_browser import require_browser, start_driver, wait_for
from tests.web_supervisor import ANNOUNCEMENT, REPO, SupervisorProcess

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    browser = start_driver(tmp_path_factory.mktemp("chromium-profile"))
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def product(tmp_path: Path) -> Iterator[SupervisorProcess]:
    served = SupervisorProcess(tmp_path)
    try:
        yield served
    finally:
        served.close()
        print(served.stderr())  # shown when the test failed


def _page(driver: Any, product: SupervisorProcess) -> Page:
    return Page(driver, product).open()  # type: ignore[arg-type]  # Page reads `.url` only


def _session(page: Page, product: SupervisorProcess, name: str) -> None:
    (product.work / name).mkdir(exist_ok=True)
    page.new_session(name, str(product.work / name))


# --- acceptance 1: a fresh start with no configuration ---------------------------------


def test_no_config_file_serves_the_web_chat_and_a_session_answers(
    driver: Any, product: SupervisorProcess
) -> None:
    url = product.start()

    assert url.startswith("http://127.0.0.1:") and "?token=" in url
    token = product.token()
    # The URL goes to stderr once, for the person; no log line carries the token.
    assert [line for line in product.stderr().splitlines() if token in line] == [
        f"Web chat: open {url} in a browser (the address carries the access token)"
    ]
    assert (product.state_dir / "web-token").exists() and (product.state_dir / "web.sqlite3").exists()
    page = _page(driver, product)
    assert not page.el("#notice").is_displayed()
    _session(page, product, "demo")
    wait_for(lambda: page.thread_button("demo"), what="demo in the sidebar")
    page.send("hello there")

    page.wait_text("echo #1: hello there", timeout=20)
    assert product.prompts() == ["hello there"]
    page.thread_button("Commands").click()  # the answer to `!new` links the thread
    wait_for(lambda: page.els("#messages li.bot a[href^='#thread/']"), what="a link")[-1].click()
    wait_for(lambda: page.el("#thread-title").text == "demo", what="the link followed")
    assert product.stop() == 0


def test_without_claude_the_page_and_check_say_it_is_missing(
    driver: Any, tmp_path: Path
) -> None:
    product = SupervisorProcess(tmp_path, with_claude=False)
    try:
        checked = subprocess.run(
            [sys.executable, "-m", "supervisor", "check"],
            cwd=product.cwd, env=product.env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        product.start()
        page = _page(driver, product)
        notice = wait_for(lambda: page.el("#notice").is_displayed() and page.el("#notice").text)
    finally:
        product.close()

    assert checked.returncode == 1
    assert "claude was not found on PATH" in checked.stdout
    assert "npm install -g @anthropic-ai/claude-code" in checked.stdout
    assert "web listen" in checked.stdout and "web page" in checked.stdout
    assert "`claude` was not found" in notice and "npm install -g @anthropic-ai/claude-code" in notice


def test_an_explicit_config_that_does_not_exist_is_still_exit_2(tmp_path: Path) -> None:
    product = SupervisorProcess(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", "nowhere.toml"],
        cwd=product.cwd, env=product.env(), capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert done.returncode == 2
    assert "nowhere.toml" in done.stderr and "does not exist" in done.stderr
    assert not product.state_dir.exists()


def test_a_remote_listen_without_allow_remote_is_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "supervisor.toml"
    config.write_text('[web]\nlisten = "0.0.0.0:8765"\n')
    done = subprocess.run(
        [sys.executable, "-m", "supervisor", "run", "--config", str(config)],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip

    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "web.listen" in done.stderr
    assert "web.allow_remote" in done.stderr


def test_a_busy_port_is_one_sentence_naming_web_listen(tmp_path: Path) -> None:
    product = SupervisorProcess(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        product.port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "supervisor", "run"],
            cwd=product.cwd, env=product.env(), capture_output=True, text=True, timeout=30,
        )  # fmt: skip

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    said = [line for line in done.stderr.splitlines() if "cannot listen" in line]
    assert len(said) == 1 and "web.listen" in said[0] and f":{product.port}" in said[0], done.stderr
    assert "$SUPERVISOR_WEB_LISTEN" in said[0]  # what one sets with no configuration file


# --- acceptance 2: the thread's life in the browser -------------------------------------


def _grows(page: Page, needle: str, timeout: float = 20) -> list[int]:
    """The lengths of the last answer seen while it streams, until `needle` shows."""
    lengths = []
    deadline = time.monotonic() + timeout
    while needle not in page.last_bot() and time.monotonic() < deadline:
        lengths.append(len(page.last_bot()))
        time.sleep(0.05)
    assert needle in page.last_bot(), page.last_bot()
    return sorted(set(lengths))


def _choose(page: Page, option: str) -> None:
    button = wait_for(
        lambda: page.els(f"#messages li.choice .choices button[data-option={option}]"),
        what=f"a card with {option}",
    )[-1]
    button.click()


def test_stream_permissions_stop_attachment_and_status(
    driver: Any, product: SupervisorProcess, tmp_path: Path
) -> None:
    product.start()
    page = _page(driver, product)
    _session(page, product, "work")

    page.send("[slow 4] a streamed answer")
    growth = _grows(page, "✅ Done")  # the completion line ends the turn
    assert len(growth) >= 3, growth  # seen growing, not only once finished
    wait_for(lambda: not page.el("#stop").is_displayed(), 1.5, what="Stop gone with the turn")
    assert "idle" in page.thread_button("work").text  # the sidebar: no turn runs

    page.send("[tool touch allowed.txt] please")
    labels = wait_for(lambda: page.texts("#messages li.choice .choices button"), what="card")
    assert labels == ["Allow", "Allow for this session", "Deny"]
    _choose(page, "allow_once")
    page.wait_text("tool ran: touch allowed.txt", timeout=20)
    wait_for(lambda: "Allowed once" in page.texts("#messages li.choice")[-1], what="outcome")
    assert not page.els("#messages li.choice .choices button")  # answered: no buttons left

    page.send("[tool rm -rf build] no")
    _choose(page, "reject")
    page.wait_text("tool denied", timeout=20)
    wait_for(lambda: "Denied" in page.texts("#messages li.choice")[-1], what="denied outcome")
    assert "tool ran: rm -rf build" not in page.texts("#messages")[0]

    page.send("[tool make] always")
    _choose(page, "allow_always")
    page.wait_text("tool ran: make", timeout=20)
    cards = len(page.els("#messages li.choice"))
    page.send("[tool make] again")
    wait_for(lambda: page.texts("#messages")[0].count("tool ran: make") == 2, 20, what="ran again")
    assert len(page.els("#messages li.choice")) == cards  # not asked again

    page.send("[slow 30] a long one")
    wait_for(lambda: page.el("#stop").is_displayed(), 1.5, what="Stop as the turn starts")
    assert "busy" in page.thread_button("work").text
    time.sleep(0.5)
    page.el("#stop").click()
    page.wait_text("nterrupted", timeout=15)

    upload = tmp_path / "notes.txt"
    upload.write_bytes(b"hello from the page\n")
    page.el("#files").send_keys(str(upload))
    wait_for(lambda: "notes.txt" in page.el("#attachments").text, what="chip")
    page.send("see attached")
    wait_for(lambda: any("see attached" in p for p in product.prompts()), 20, what="prompt")
    saved = list((product.work / "work" / ".supervisor" / "uploads").rglob("notes.txt"))
    assert [p.read_bytes() for p in saved] == [upload.read_bytes()]
    where = str(saved[0].relative_to(product.work / "work"))  # the prompt names it
    assert any(where in prompt and "see attached" in prompt for prompt in product.prompts())

    page.send("!status")
    page.wait_text("turns", timeout=15)
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / "web-chat-supervisor.png"))  # what one gets


def test_a_prompt_written_during_a_turn_is_said_queued_in_the_running_answer(
    driver: Any, product: SupervisorProcess
) -> None:
    product.start()
    page = _page(driver, product)
    _session(page, product, "queue")
    page.send("[slow 3] first")
    wait_for(lambda: "echo #1" in page.last_bot(), 15, what="the first turn running")
    page.send("second")

    wait_for(lambda: "1 more prompt queued" in page.last_bot(), 10, what="the queue said in the running answer")
    page.wait_text("echo #2: second", timeout=20)
    wait_for(lambda: not any("queued" in t for t in page.bot_texts()), 10, what="the final texts without it")


def test_a_prompt_in_an_ended_session_shows_no_turn_starting(
    driver: Any, product: SupervisorProcess
) -> None:
    product.start()
    page = _page(driver, product)
    _session(page, product, "over")
    page.send("!end")
    wait_for(lambda: "ended" in page.thread_button("over").text, 15, what="the session ended")
    page.send("still there?")

    # No agent will take it: no typing indicator, no Stop, the sidebar still says ended.
    assert not page.el("#typing").is_displayed() and not page.el("#stop").is_displayed()
    assert "ended" in page.thread_button("over").text
    page.wait_text("This session has ended", timeout=15)


def test_a_prompt_sent_while_the_supervisor_is_down_shows_no_turn_working(
    driver: Any, product: SupervisorProcess
) -> None:
    """It showed "agent is working" and Stop at once, as if the turn ran: nothing runs
    until the supervisor is back, and then its typing signal says so."""
    product.start()
    page = _page(driver, product)
    _session(page, product, "offline")
    page.send("first")
    page.wait_text("✅ Done", timeout=20)
    assert product.stop() == 0
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    page.send("[slow 6] typed while down")
    assert page.els("li.pending")
    time.sleep(0.6)  # the page redraws the typing line twice a second

    assert not page.el("#typing").is_displayed() and not page.el("#stop").is_displayed()
    product.start()
    wait_for(lambda: page.el("#stop").is_displayed(), 20, what="Stop once the turn runs")


# --- acceptance 3: reloads and restarts ------------------------------------------------


def test_a_page_loaded_mid_turn_shows_the_session_busy_at_once(
    driver: Any, product: SupervisorProcess
) -> None:
    product.start()
    page = _page(driver, product)
    _session(page, product, "loaded")
    page.send("[slow 8] the long one")
    wait_for(lambda: "echo #1" in page.last_bot(), 15, what="streaming")
    driver.refresh()
    page.wait_connected()

    # As the page connects, not at the turn's next typing signal (up to 4 s later).
    assert "busy" in page.thread_button("loaded").text and page.el("#stop").is_displayed()
    page.wait_text("✅ Done", timeout=20)
    driver.refresh()
    page.wait_connected()
    page.wait_text("✅ Done")
    # The turn's last signal was moments ago, but its completion line says it is over.
    assert "idle" in page.thread_button("loaded").text and not page.el("#stop").is_displayed()


def _answers(page: Page, needle: str) -> int:
    return sum(needle in text for text in page.bot_texts())


@pytest.mark.slow
def test_reload_mid_stream_then_restarts_keep_history_and_deliver_once(
    driver: Any, product: SupervisorProcess
) -> None:
    product.start()
    page = _page(driver, product)
    _session(page, product, "durable")
    page.send("[slow 6] the long one")
    wait_for(lambda: "echo #1" in page.last_bot(), 15, what="streaming")
    driver.refresh()
    page.wait_connected()
    wait_for(lambda: "echo #1" in page.last_bot(), 5, what="the text so far after a reload")
    assert "✅ Done" not in page.last_bot()
    before = len(page.last_bot())
    wait_for(lambda: len(page.last_bot()) > before, 5, what="still growing after the reload")
    page.wait_text("✅ Done", timeout=20)

    assert product.stop() == 0  # SIGTERM
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    page.send("typed while stopped")
    assert page.els("li.pending")  # shown, waiting for the supervisor
    product.start()
    page.wait_connected()
    wait_for(lambda: _answers(page, "typed while stopped") == 1, 30, what="answer after SIGTERM")
    # Recorded as shown: a kill just before that would post the answer again, said so.
    wait_for(lambda: nothing_to_post_again(product.state_dir), 10, what="the answer recorded as shown")

    product.kill()  # kill -9: no goodbye at all
    wait_for(lambda: page.el("#connection").text == "reconnecting…", what="seen down")
    page.send("typed while killed")
    product.start()
    page.wait_connected()
    wait_for(lambda: _answers(page, "typed while killed") == 1, 30, what="answer after kill -9")

    time.sleep(1.5)  # any second delivery would show by now
    prompts = product.prompts()
    assert prompts.count("typed while stopped") == 1 and prompts.count("typed while killed") == 1
    driver.refresh()
    page.wait_connected()
    wait_for(lambda: _answers(page, "typed while killed") == 1, what="history after a reload")
    users = page.texts("#messages > li.user")
    assert users == ["[slow 6] the long one", "typed while stopped", "typed while killed"]
    for turn, text in enumerate(("the long one", "typed while stopped", "typed while killed"), 1):
        assert _answers(page, f"echo #{turn}: {text}") == 1, page.bot_texts()
    assert not page.els("li.pending")


# --- acceptance 1, literally: the README's main-job command in a fresh clone -----------


@pytest.mark.slow  # a clone and a zipapp build
def test_the_readme_main_job_with_no_config_serves_the_web_chat(
    driver: Any, tmp_path: Path
) -> None:
    from tests.test_readme import fresh_clone, fresh_machine_env, kill_group, quick_start

    command = quick_start()["main"]
    clone = fresh_clone(tmp_path / "clone")
    product = SupervisorProcess(tmp_path / "machine")  # its HOME, fake `claude`, agent log
    machine = fresh_machine_env()
    env = {
        **machine,
        "HOME": str(product.home),
        "PATH": os.pathsep.join([str(product.bin), machine.get("PATH", "")]),
        "FAKE_AGENT_LOG": str(product.agent_log),
        "SUPERVISOR_WEB_LISTEN": "127.0.0.1:0",  # not 8765: tests run side by side
    }
    with product.stderr_path.open("ab") as log:
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=clone, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 150  # a pip install from its cache, then the start
        while not (found := ANNOUNCEMENT.search(product.stderr())):
            assert process.poll() is None and time.monotonic() < deadline, product.stderr()
            time.sleep(0.1)
        product.url = found[1]
        page = _page(driver, product)
        _session(page, product, "readme")
        page.send("hello from the quick start")
        page.wait_text("echo #1: hello from the quick start", timeout=30)
        assert (product.state_dir / "web.sqlite3").exists()
        os.killpg(process.pid, signal.SIGTERM)  # as systemd stops a service
        assert process.wait(12) == 0, product.stderr()
    finally:
        kill_group(process)
