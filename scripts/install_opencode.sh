#!/usr/bin/env bash
# Install the pinned OpenCode used by the real-OpenCode tests into .cache/opencode/
# (git-ignored). Idempotent: does nothing when the right version is already there.
# The npm package carries its platform binary as an npm dependency, so nothing else is
# downloaded at install or run time.
#
#   scripts/install_opencode.sh            # install / verify
#   OPENCODE_VERSION=x.y.z scripts/install_opencode.sh   # another version (tests expect 1.18.33)
set -euo pipefail

VERSION="${OPENCODE_VERSION:-1.18.33}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="$ROOT/.cache/opencode"
BIN="$PREFIX/node_modules/.bin/opencode"

installed_version() {
    [ -x "$BIN" ] || return 1
    # Its own home, so that asking the version neither reads nor writes the user's config.
    local home
    home="$(mktemp -d)"
    HOME="$home" XDG_CONFIG_HOME="$home/config" XDG_DATA_HOME="$home/data" \
        XDG_CACHE_HOME="$home/cache" XDG_STATE_HOME="$home/state" \
        OPENCODE_DISABLE_AUTOUPDATE=1 "$BIN" --version 2>/dev/null | tail -n1
    local status=$?
    rm -rf "$home"
    return $status
}

if current="$(installed_version)" && [[ "$current" == "$VERSION" ]]; then
    echo "opencode $VERSION already installed: $BIN"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    echo "error: npm not found on PATH; install Node.js (>= 18) and npm, then re-run $0" >&2
    exit 2
fi

mkdir -p "$PREFIX"
# A package.json keeps npm from walking up to a parent project.
[ -f "$PREFIX/package.json" ] || echo '{"name":"opencode-cache","private":true}' >"$PREFIX/package.json"

echo "installing opencode-ai@$VERSION into $PREFIX ..."
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "opencode-ai@$VERSION"

if ! current="$(installed_version)"; then
    echo "error: npm finished but $BIN does not run" >&2
    exit 1
fi
if [[ "$current" != "$VERSION" ]]; then
    echo "error: expected opencode $VERSION, $BIN --version says: $current" >&2
    exit 1
fi
echo "installed: opencode $current ($BIN)"
