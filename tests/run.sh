#!/usr/bin/env bash
# tests/run.sh BUILD_DIR — runs every test binary in BUILD_DIR/tests and every
# tests/*.sh script, and prints the closing line "N passed, N failed, N skipped".
# Scripts and binaries report PASS/FAIL/SKIP lines (see tests/test.h); one that
# exits non-zero without reporting a FAIL adds a failure of its own.
set -u
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export WIM_SHARED=${WIM_SHARED:-$root/../shared}
export WIM_BIN=$root/$build/wim
export WIM_BUILD=$root/$build
pass=0 fail=0 skip=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run_one() { # name, command...
    local name=$1; shift
    local t0=$SECONDS
    "$@" >"$log" 2>&1
    local rc=$?
    grep -E '^(PASS|FAIL|SKIP) ' "$log"
    local p f s
    p=$(grep -c '^PASS ' "$log"); f=$(grep -c '^FAIL ' "$log"); s=$(grep -c '^SKIP ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $name: exited with status $rc; last output:"; tail -n 15 "$log" | sed 's/^/    /'
        f=$((f + 1))
    fi
    pass=$((pass + p)); fail=$((fail + f)); skip=$((skip + s))
    echo "   ($name: $((SECONDS - t0))s)"
}
for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    run_one "$(basename "$t")" "$t"
done
for t in tests/*.sh; do
    [ "$(basename "$t")" = run.sh ] && continue
    run_one "$(basename "$t")" bash "$t"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
