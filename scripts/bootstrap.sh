#!/usr/bin/env bash
# Set up everything the tests need, from the project's own files: a project-local virtual
# environment (.venv) with the package and its test dependencies, and the pinned Claude
# Code CLI for the real-agent tests (.cache/claude-code). Idempotent and quick once done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    # A venv whose creation failed half-way (no ensurepip: Debian's python3-venv missing)
    # has a python but no pip: made again, or every later run would fail on it.
    if ! .venv/bin/python -m pip --version >/dev/null 2>&1; then
        rm -rf .venv
        "$PYTHON" -m venv .venv
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi

if command -v npm >/dev/null 2>&1; then
    scripts/install_claude.sh >/dev/null
elif [ "${CI:-}" = "true" ]; then
    echo "error: npm is required in CI for the real Claude Code CLI tests" >&2
    exit 1
else
    echo "note: npm not found; the real Claude Code CLI tests will be skipped" >&2
fi

# The web chat's browser tests: Debian's Chromium and its WebDriver. Installed when we are
# root and they are missing (CI runs as root); under CI=true a missing browser is a failure.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        # The emoji font only makes the screenshots show what people see.
        apt-get install -y -q --no-install-recommends \
            chromium chromium-driver fonts-noto-color-emoji >/dev/null
    fi
fi
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "${CI:-}" = "true" ]; then
        echo "error: chromium and chromium-driver are required in CI for the web chat tests" >&2
        exit 1
    fi
    echo "note: chromium/chromium-driver not found; the web chat browser tests will be skipped" >&2
fi

# The pinned OpenCode for the real-OpenCode (ACP) tests (.cache/opencode), and the second
# real ACP agent, Claude through its ACP adapter (.cache/claude-agent-acp).
if command -v npm >/dev/null 2>&1; then
    scripts/install_opencode.sh >/dev/null
    scripts/install_claude_acp.sh >/dev/null
elif [ "${CI:-}" = "true" ]; then
    echo "error: npm is required in CI for the real OpenCode and Claude ACP tests" >&2
    exit 1
else
    echo "note: npm not found; the real OpenCode tests will be skipped" >&2
fi
