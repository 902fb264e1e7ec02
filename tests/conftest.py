"""Shared fixtures: Hypothesis profiles and the guard against leftover processes."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.zipapp_fixture"]

settings.register_profile("ci", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else os.environ.get("HYPOTHESIS_PROFILE", "dev"))

# Every process started under this test run inherits this marker, so a process that
# outlives its test is found even after it was re-parented to init.
LEAK_MARKER = "SUPERVISOR_TEST_RUN"
os.environ[LEAK_MARKER] = uuid.uuid4().hex


def marked_processes() -> set[int]:
    needle = f"{LEAK_MARKER}={os.environ[LEAK_MARKER]}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = (entry / "stat").read_text()
                if stat.rsplit(")", 1)[1].split()[0] != "Z":  # zombies are already dead
                    found.add(int(entry.name))
        except OSError:
            continue
    return found


@pytest.fixture(autouse=True)
def no_leftover_processes() -> Iterator[None]:
    """Fail any test that leaves a child process (or an agent's process group) behind."""
    before = marked_processes()
    yield
    deadline = time.monotonic() + 3
    while (left := marked_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left:
        described = []
        for pid in sorted(left):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
                described.append(f"{pid}: {cmdline.decode(errors='replace')[:120]}")
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        pytest.fail("test left processes behind:\n" + "\n".join(described))
