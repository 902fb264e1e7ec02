"""Where the OpenAPI checks find the spec, and what happens when it is missing.

The spec lives in the shared reference folder beside the repository (`../shared/...`
relative to its root), so the checks run on any machine with that layout, not only on the
one whose absolute path was once written down. Under CI=true a missing spec is a failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.fakes import openapi_check

REPO = Path(__file__).resolve().parents[1]


def test_the_default_spec_is_the_shared_reference_beside_the_repository() -> None:
    expected = REPO.parent / "shared" / "reference" / "mattermost" / "openapi"
    assert openapi_check.DEFAULT_SPEC.parent == expected
    assert openapi_check.DEFAULT_SPEC.name == "mattermost-openapi-v4.patched.json"
    assert openapi_check.DEFAULT_SPEC.exists(), "the checks must run here, not skip"


def _run_spec_tests(tmp_path: Path, ci: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "MATTERMOST_OPENAPI_SPEC": str(tmp_path / "missing.json"),
        "CI": ci,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_openapi_shapes.py::test_checker_reports_bad_requests", "-rs"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )


def test_a_missing_spec_fails_under_ci(tmp_path: Path) -> None:
    done = _run_spec_tests(tmp_path, "true")
    assert done.returncode == 1, done.stdout[-2000:]
    assert "1 failed" in done.stdout or "1 error" in done.stdout, done.stdout[-2000:]
    assert "CI=true" in done.stdout, done.stdout[-2000:]


def test_a_missing_spec_skips_outside_ci(tmp_path: Path) -> None:
    done = _run_spec_tests(tmp_path, "")
    assert done.returncode == 0, done.stdout[-2000:]
    assert "1 skipped" in done.stdout, done.stdout[-2000:]
