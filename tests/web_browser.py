"""Debian's headless Chromium under Selenium, for the web chat's browser tests.

The flags keep Chromium from reaching out on its own (background networking, component
updates, sync, QUIC): on a machine with no internet it would otherwise retry for ever.
Without a browser the tests skip, except under CI=true, where that is a failure
(scripts/bootstrap.sh installs `chromium` and `chromium-driver`).
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

T = TypeVar("T")

CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--metrics-recording-only",
    "--no-default-browser-check",
    "--password-store=basic",
)


def find_browser() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    return (chromium, driver) if chromium and driver else None


def require_browser() -> tuple[str, str]:
    found = find_browser()
    if found is None:
        message = "chromium and chromium-driver are needed (scripts/bootstrap.sh installs them)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def start_driver(user_data_dir: Path, width: int = 1280, height: int = 900) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = require_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: Selenium Manager never tries to download anything.
    service = Service(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def wait_for(
    condition: Callable[[], T], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll `condition` until it returns something truthy (exceptions count as not yet)."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception as error:  # a stale element, a missing one: not there yet
            last = error
        else:
            if value:
                return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last!r})" if last else ""))
