#!/usr/bin/env bash
# Install the pinned Claude ACP adapter (@zed-industries/claude-agent-acp) used by the
# second-ACP-agent tests into .cache/claude-agent-acp/ (git-ignored). Idempotent. The
# adapter runs the Claude Agent SDK, whose npm package carries the Claude Code CLI it
# starts, so nothing else is downloaded at install or run time.
#
#   scripts/install_claude_acp.sh                  # install / verify
#   CLAUDE_ACP_VERSION=x.y.z scripts/install_claude_acp.sh   # another version (tests expect 0.23.1)
set -euo pipefail

VERSION="${CLAUDE_ACP_VERSION:-0.23.1}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.cache/claude-agent-acp"
PACKAGE="$PREFIX/node_modules/@zed-industries/claude-agent-acp/package.json"
BIN="$PREFIX/node_modules/.bin/claude-agent-acp"

installed_version() {
    [ -x "$BIN" ] && [ -f "$PACKAGE" ] || return 1
    node -e 'console.log(require(process.argv[1]).version)' "$PACKAGE"
}

if current="$(installed_version)" && [[ "$current" == "$VERSION" ]]; then
    echo "claude-agent-acp $VERSION already installed: $BIN"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found on PATH; install Node.js (>= 18) and npm, then re-run $0" >&2
    exit 2
fi

mkdir -p "$PREFIX"
# A package.json keeps npm from walking up to a parent project.
[ -f "$PREFIX/package.json" ] || echo '{"name":"claude-agent-acp-cache","private":true}' >"$PREFIX/package.json"

echo "installing @zed-industries/claude-agent-acp@$VERSION into $PREFIX ..."
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "@zed-industries/claude-agent-acp@$VERSION"

if ! current="$(installed_version)" || [[ "$current" != "$VERSION" ]]; then
    echo "error: expected claude-agent-acp $VERSION in $PREFIX, found: ${current:-nothing}" >&2
    exit 1
fi
echo "installed: claude-agent-acp $current ($BIN)"
