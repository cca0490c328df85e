#!/usr/bin/env bash
# profile.sh — `wim profile`: with tiled attention the scratch peak does not
# depend on the context length L; with the materialised score matrix it grows
# exactly as L x K. Also checks the JSON fields and that the SVG is written.
set -u
W=${WIM_BIN:-build/wim}
S=${WIM_SHARED:-../shared}
M=$S/models/stories260K.gguf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
if [ ! -f "$M" ] || ! /usr/bin/python3 -c 'import json' 2>/dev/null; then
    echo "SKIP profile_scratch_scaling: needs $M and python3"
    exit 0
fi
if ! $W profile -m "$M" -L 512,2048 -K 128,256 --json --svg "$T/p.svg" >"$T/p.jsonl" 2>"$T/e"; then
    echo "FAIL profile_runs: $(head -c 300 "$T/e")"
    exit 0
fi
echo "PASS profile_runs"
/usr/bin/python3 - "$T/p.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
need = {"L", "K", "mode", "scratch_peak_bytes", "kv_bytes", "rss_peak_bytes", "ms"}
ok = len(rows) == 8 and all(need <= set(r) for r in rows)
print(("PASS" if ok else "FAIL") + " profile_json_fields" + ("" if ok else f": {rows}"))
get = {(r["L"], r["K"], r["mode"]): r for r in rows}
tiled_same = all(get[(512, k, "tiled")]["scratch_peak_bytes"] == get[(2048, k, "tiled")]["scratch_peak_bytes"] for k in (128, 256))
print(("PASS" if tiled_same else "FAIL") + " profile_tiled_scratch_independent_of_L")
extra = {(L, K): get[(L, K, "materialized")]["scratch_peak_bytes"] - get[(L, K, "tiled")]["scratch_peak_bytes"]
         for L in (512, 2048) for K in (128, 256)}
base = extra[(512, 128)]
grows = base > 0 and all(extra[(L, K)] == base * (L // 512) * (K // 128) for L, K in extra)
print(("PASS" if grows else "FAIL") + " profile_materialized_scratch_grows_as_L_times_K" + ("" if grows else f": {extra}"))
kv_grows = get[(2048, 128, "tiled")]["kv_bytes"] == 4 * get[(512, 128, "tiled")]["kv_bytes"]
print(("PASS" if kv_grows else "FAIL") + " profile_kv_grows_with_L")
PY
grep -q '<polyline' "$T/p.svg" && grep -q 'tiled' "$T/p.svg" && echo "PASS profile_svg_written" || echo "FAIL profile_svg_written: no plot"
$W profile -m "$M" -L 10 -K 20 >/dev/null 2>"$T/e2"
[ $? -eq 2 ] && [ "$(wc -l <"$T/e2")" -eq 1 ] && echo "PASS profile_nothing_to_measure_is_an_error" ||
    echo "FAIL profile_nothing_to_measure_is_an_error: $(head -c 200 "$T/e2")"
