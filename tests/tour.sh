#!/usr/bin/env bash
# tour.sh — docs/TOUR.md runs as written. Every `build/wim ...` line of its ```sh blocks
# (one per stop) runs from the repository root, with build/wim replaced by $WIM_BIN,
# ../shared by $WIM_SHARED and /tmp/ by a temporary folder; each must exit 0, print on
# stdout and write the files it names. One PASS/FAIL/SKIP line per command (SKIP: a
# fixture under ../shared is missing); the tour must keep at least ten commands, and
# every src/FILE:FUNCTION it tells the reader to read must exist.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 1
export W=${WIM_BIN:-build/wim}
export S=${WIM_SHARED:-$ROOT/../shared}
export T
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
TOUR=${WIM_TOUR:-docs/TOUR.md} # another file: to test this script
LIMIT=60 # seconds per command; the whole tour takes a few

if [ ! -f "$TOUR" ]; then
    echo "FAIL tour_commands: $TOUR not found"
    exit 0
fi
mapfile -t cmds < <(awk '/^```sh[[:space:]]*$/ { sh = 1; next }
                         /^```/ { sh = 0; next }
                         sh && /^build\/wim / { print }' "$TOUR")
if [ "${#cmds[@]}" -lt 10 ]; then
    echo "FAIL tour_commands: ${#cmds[@]} build/wim commands in $TOUR's sh blocks, expected at least 10"
else
    echo "PASS tour_commands (${#cmds[@]} commands)"
fi

# shellcheck disable=SC2016 # the commands name $S and $T; bash -c expands them
shared='"$S"' tmp='"$T"/'
for i in "${!cmds[@]}"; do
    n=$((i + 1)) cmd=${cmds[i]}
    missing=
    while read -r p; do
        [ -e "$S/${p#../shared/}" ] || missing=$p
    done < <(grep -o '\.\./shared/[^ "]*' <<<"$cmd")
    if [ -n "$missing" ]; then
        echo "SKIP tour_stop_$n: needs $missing"
        continue
    fi
    rest=${cmd#build/wim }
    rest=${rest//..\/shared/$shared}
    rest=${rest//\/tmp\//$tmp}
    rm -rf "${T:?}"/* 2>/dev/null
    timeout "$LIMIT" bash -c "\"\$W\" $rest" >"$T/.out" 2>"$T/.err" </dev/null
    rc=$?
    if [ "$rc" -ne 0 ]; then
        why=$(tail -n 1 "$T/.err")
        [ "$rc" -eq 124 ] && why="timed out after $LIMIT s"
        echo "FAIL tour_stop_$n: ${why:-exit status $rc}"
        continue
    fi
    if [ ! -s "$T/.out" ]; then
        echo "FAIL tour_stop_$n: printed nothing on stdout"
        continue
    fi
    unwritten=
    while read -r p; do
        [ -s "$T/${p#/tmp/}" ] || unwritten=$p
    done < <(grep -o '/tmp/[^ "]*' <<<"$cmd")
    if [ -n "$unwritten" ]; then
        echo "FAIL tour_stop_$n: did not write $unwritten"
        continue
    fi
    echo "PASS tour_stop_$n ($cmd)"
done

# What the tour tells the reader to read: `src/FILE.c:FUNCTION` (or simd/, a header).
refs=$(grep -oE '(src|simd)/[A-Za-z0-9_]+\.[ch]:[A-Za-z_][A-Za-z0-9_]*' "$TOUR" | sort -u)
gone=
for r in $refs; do
    f=${r%%:*} fn=${r##*:}
    grep -qE "(^|[^A-Za-z0-9_])$fn\(" "$f" 2>/dev/null || gone="$gone $r"
done
if [ -z "$refs" ]; then
    echo "FAIL tour_reads: no src/FILE:FUNCTION in $TOUR"
elif [ -n "$gone" ]; then
    echo "FAIL tour_reads: not found:$gone"
else
    echo "PASS tour_reads ($(wc -w <<<"$refs") functions)"
fi
