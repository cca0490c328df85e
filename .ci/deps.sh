#!/usr/bin/env bash
# .ci/deps.sh — makes sure the Debian packages wim needs are installed.
# Installs the missing ones with apt-get when run as root; otherwise prints the
# one command that would, and fails. Fast when nothing is missing.
# `deps.sh demo`: only what building wim and running the demo take (no test tools, no
# NEON cross toolchain).
set -u
build=(gcc make libc6-dev libopenblas-dev zlib1g-dev libcjson-dev libmicrohttpd-dev)
# the tests: reference scripts, word lists, the NEON cross build under qemu, the page in chromium
pkgs=("${build[@]}" python3 python3-numpy unicode-data wamerican chromium
      gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
[ "$(uname -m)" = aarch64 ] && pkgs=("${build[@]}" python3 python3-numpy unicode-data wamerican chromium)
[ "${1:-}" = demo ] && pkgs=("${build[@]}")
# The browser test's driver, playwright-core, from npm at the version its lockfile pins (with
# the machine's Node.js; tests/serve.sh says SKIP with the reason when it cannot be had).
browser_driver() {
    [ "${1:-}" = demo ] && return 0
    local dir
    dir=$(cd "$(dirname "$0")/../tests/browser" && pwd)
    [ -d "$dir/node_modules/playwright-core" ] && return 0
    if ! command -v npm >/dev/null; then
        echo "note: npm not found: the browser test of wim serve will be skipped" >&2
        return 0
    fi
    echo "installing playwright-core into tests/browser (npm ci)" >&2
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null 2>&1 ||
        echo "note: npm ci failed in tests/browser: the browser test will be skipped" >&2
}
browser_driver "${1:-}"

missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "wim needs these Debian packages: ${missing[*]}" >&2
    echo "install them with:  sudo apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
    { echo "apt-get could not install: ${missing[*]}" >&2; exit 1; }
