#!/usr/bin/env bash
# repro.sh — `wim repro` end to end on 5 examples of every task in ../shared with
# the tiny stories260K model: it completes and makes a table; the same run split
# into 3 shards and merged gives the same table; a run killed midway resumes
# without redoing finished work.
set -u
W=${WIM_BIN:-build/wim}
S=${WIM_SHARED:-../shared}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
M=$S/models/stories260K.gguf
if [ ! -f "$M" ] || [ ! -d "$S/data/hotpotqa" ]; then
    echo "SKIP repro_end_to_end: needs $M and $S/data"
    exit 0
fi
# 5 examples per task; sanitizer builds (WIM_TEST_QUICK=1) take 2: the same code paths
N=5
[ "${WIM_TEST_QUICK:-0}" -gt 0 ] 2>/dev/null && N=2
fast="--segment-tokens 500 --margin-tokens 4 --answer-tokens 4 --classify-tokens 2 --stream --kv-capacity 2048 -t 2"
data() {
    case $1 in
    hotpotqa) echo "--data $S/data/hotpotqa/hotpot_dev_distractor_sample.jsonl --n $N" ;;
    squad) echo "--data $S/data/squad2 --n $N" ;;
    multihop-rag) echo "--data $S/data/multihop-rag/queries.json --n $N" ;;
    babilong) echo "--data $T/babilong-small.json --n $N" ;;
    cwe) echo "--words $S/data/cwe/nounlist.txt,$S/data/cwe/adjectivelist.txt,$S/data/cwe/verblist.txt --n $N" ;;
    esac
}
# BABILong's haystacks are 8k+ tokens: cut 5 small examples (same format) from one of them
/usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
c = d["context"]
json.dump([{"context": c[i * 1500:(i + 1) * 1500], "query": d["query"], "target": d["target"]} for i in range(5)],
          open(sys.argv[2], "w"))' "$S/data/babilong/babilong_8k.json" "$T/babilong-small.json"
tasks="hotpotqa squad multihop-rag babilong cwe"
ok=1
for task in $tasks; do
    $W repro --task $task --length 1500 -m "$M" $(data $task) --out "$T/full" $fast 2>"$T/e" ||
        { ok=0; echo "FAIL repro_runs_$task: $(head -c 300 "$T/e")"; }
done
[ $ok = 1 ] && echo "PASS repro_runs_every_task"
$W repro --table "$T/full" >"$T/full.md" 2>"$T/e" && grep -q '| stories260K.gguf |' "$T/full.md" &&
    grep -q 'reasoning' "$T/full.md" && echo "PASS repro_table" || echo "FAIL repro_table: $(cat "$T/e" "$T/full.md" | head -c 300)"
lines=$(cat "$T/full"/*.jsonl | wc -l)
[ "$lines" -eq $((5 * N * 3)) ] && echo "PASS repro_result_count ($lines lines)" || echo "FAIL repro_result_count: $lines lines"

# the same run in 3 shards (written in a different order) merges to the same table
for shard in 2 0 1; do
    for task in hotpotqa cwe; do
        $W repro --task $task --length 1500 -m "$M" $(data $task) --out "$T/shards" --shard $shard/3 $fast 2>"$T/e" ||
            echo "FAIL repro_shard: $(head -c 200 "$T/e")"
    done
done
mkdir -p "$T/sub"
for task in hotpotqa cwe; do cp "$T/full/$task-"*.jsonl "$T/sub/"; done
$W repro --table "$T/sub" >"$T/a.md"
$W repro --table "$T/shards" >"$T/b.md"
$W repro --table "$T/shards" "$T/shards/cwe-1500-shard1of3.jsonl" >"$T/c.md" # a file given twice counts once
$W repro --table "$T/shards" --csv >"$T/b.csv"
if cmp -s "$T/a.md" "$T/b.md" && cmp -s "$T/a.md" "$T/c.md"; then echo "PASS repro_shards_merge_to_same_table"
else echo "FAIL repro_shards_merge_to_same_table: $(diff "$T/a.md" "$T/b.md" | head -c 300)"; fi
[ "$(head -1 "$T/b.csv" | cut -d, -f1)" = model ] && [ "$(wc -l <"$T/b.csv")" -eq 2 ] &&
    echo "PASS repro_table_csv" || echo "FAIL repro_table_csv: $(head -c 200 "$T/b.csv")"
cat "$T/shards"/*.jsonl | /usr/bin/python3 -c '
import json, sys
keys = [(r["task"], r["example_id"], r["pattern"]) for r in map(json.loads, sys.stdin)]
sys.exit(0 if len(keys) == len(set(keys)) == 6 * int(sys.argv[1]) else 1)' "$N" && echo "PASS repro_shards_disjoint" || echo "FAIL repro_shards_disjoint"

# killed midway (SIGKILL, a torn line possible), then resumed: finished work is kept
out="$T/resume"
$W repro --task squad --length 1500 -m "$M" $(data squad) --out "$out" $fast -v 2>"$T/v1" &
pid=$!
f="$out/squad-1500-shard0of1.jsonl"
for _ in $(seq 1 600); do [ "$(cat "$f" 2>/dev/null | wc -l)" -ge 2 ] && break; sleep 0.05; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
printf '{"task":"squad","torn' >>"$f" # what a crash mid-write leaves
before=$(grep -c . "$f")
done_before=$((before - 1))
head -n $done_before "$f" >"$T/first"
$W repro --task squad --length 1500 -m "$M" $(data squad) --out "$out" $fast -v 2>"$T/v2"
redone=$(grep -c 'score' "$T/v2")
total=$(wc -l <"$f")
if [ "$total" -eq $((3 * N)) ] && [ "$redone" -eq $((3 * N - before + 1)) ] && head -n $done_before "$f" | cmp -s - "$T/first" &&
    /usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' "$f"; then
    echo "PASS repro_resume_after_kill (killed after $((before - 1)) results, redid $redone)"
else echo "FAIL repro_resume_after_kill: $total lines, $before before, $redone redone"; fi

# an LLM judge (here the tiny model itself) adds a judged score to every line
t=repro_judge_scores
$W repro --task squad --length 1500 -m "$M" --data "$S/data/squad2" --n 1 --patterns llm --out "$T/judge" \
    --judge-model "$M" $fast 2>"$T/e" &&
    /usr/bin/python3 -c '
import json, sys, glob
rows = [json.loads(l) for f in glob.glob(sys.argv[1] + "/*.jsonl") for l in open(f)]
assert len(rows) == 1 and rows[0]["score"]["judge"] in (0, 1), rows
' "$T/judge" && $W repro --table "$T/judge" | grep -q "LLM judge" && echo "PASS $t" || echo "FAIL $t: $(head -c 300 "$T/e")"
