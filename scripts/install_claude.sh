#!/usr/bin/env bash
# Install the pinned Claude Code CLI used by the real-CLI tests into .cache/claude-code/
# (git-ignored). Idempotent: does nothing when the right version is already there.
#
#   scripts/install_claude.sh            # install / verify
#   CLAUDE_CODE_VERSION=x.y.z scripts/install_claude.sh   # another version (tests expect 2.1.330)
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.330}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.cache/claude-code"
BIN="$PREFIX/node_modules/.bin/claude"

installed_version() {
    [ -x "$BIN" ] || return 1
    "$BIN" --version 2>/dev/null | head -n1
}

if current="$(installed_version)" && [[ "$current" == "$VERSION "* || "$current" == "$VERSION" ]]; then
    echo "claude $VERSION already installed: $BIN"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found on PATH; install Node.js (>= 18) and npm, then re-run $0" >&2
    exit 2
fi

mkdir -p "$PREFIX"
# A package.json keeps npm from walking up to a parent project.
[ -f "$PREFIX/package.json" ] || echo '{"name":"claude-code-cache","private":true}' >"$PREFIX/package.json"

echo "installing @anthropic-ai/claude-code@$VERSION into $PREFIX ..."
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error \
    "@anthropic-ai/claude-code@$VERSION"

if ! current="$(installed_version)"; then
    echo "error: npm finished but $BIN does not run" >&2
    exit 1
fi
if [[ "$current" != "$VERSION "* && "$current" != "$VERSION" ]]; then
    echo "error: expected claude $VERSION, $BIN --version says: $current" >&2
    exit 1
fi
echo "installed: $current ($BIN)"
