#!/usr/bin/env bash
# Install what tests/browser needs, only when missing (idempotent, quiet):
#   * the system Chromium, via apt-get (Debian's `chromium` package: /usr/bin/chromium);
#   * the Playwright Python package, via pip into the active python ($PYTHON, default `python`).
# Never runs `playwright install`: the test drives the system Chromium, no browser is downloaded.
# Another Chromium/Chrome binary can be named with HFLIB_CHROMIUM (then apt-get is skipped).
set -euo pipefail

PYTHON="${PYTHON:-python}"
CHROMIUM="${HFLIB_CHROMIUM:-/usr/bin/chromium}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if [ ! -x "$CHROMIUM" ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install-browser: $CHROMIUM is missing and there is no apt-get; install Chromium and set HFLIB_CHROMIUM" >&2
        exit 1
    fi
    sudo=""
    if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-browser: apt-get install chromium failed" >&2
        exit 1
    fi
    if [ ! -x "$CHROMIUM" ]; then
        echo "install-browser: installed the chromium package but $CHROMIUM does not exist; set HFLIB_CHROMIUM" >&2
        exit 1
    fi
fi

if ! "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    if ! "$PYTHON" -m pip install -q --disable-pip-version-check "playwright>=1.45,<2" >"$log" 2>&1; then
        cat "$log" >&2
        echo "install-browser: pip install playwright failed" >&2
        exit 1
    fi
fi

echo "install-browser: $("$CHROMIUM" --version 2>/dev/null | head -n 1), playwright $("$PYTHON" -c 'import importlib.metadata as m; print(m.version("playwright"))')"
