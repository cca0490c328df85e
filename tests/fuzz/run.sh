#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD SECONDS — make fuzz: each harness for SECONDS (or FUZZ_RUNS
# executions, whichever comes first) with libFuzzer, from a working copy of its committed
# corpus; prints executions, corpus size and findings per target.
set -u
B=$1 S=$2
cd "$(dirname "$0")/../.."
status=0
printf '%-20s %12s %10s %8s %s\n' target executions exec/s corpus findings
for bin in "$B"/tests/fuzz/fuzz_*; do
    case $bin in *.d) continue ;; esac
    name=$(basename "$bin")
    work=$B/corpus/$name found=$B/crashes/$name
    mkdir -p "$work" "$found"
    cp -n tests/fuzz/corpus/"$name"/* "$work"/ 2>/dev/null
    log=$B/$name.log
    "$bin" -max_total_time="$S" ${FUZZ_RUNS:+-runs=$FUZZ_RUNS} -print_final_stats=1 \
        -rss_limit_mb=4096 -timeout=30 \
        -artifact_prefix="$found/" "$work" >"$log" 2>&1
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    n=$(find "$found" -type f | wc -l)
    [ "$n" -gt 0 ] && status=1
    printf '%-20s %12s %10s %8s %s\n' "$name" "${execs:-?}" "${rate:-?}" \
        "$(find "$work" -type f | wc -l)" "$n$([ "$n" -gt 0 ] && echo " (see $found, $log)")"
done
exit $status
