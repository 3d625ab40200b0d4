#!/bin/bash
# Side-by-side bench of several builds or session settings, rounds interleaved (one bench invocation
# per variant per round), as root:
#   scripts/bench/ab.sh OUT ROUNDS "ARGS" name=DIR:SESSIONJSON ...
# DIR is a checkout with built packages (e.g. a git worktree), SESSIONJSON an optional --session for
# --gkd lib runs. Each run's report goes to OUT/name-round; the throughput lines to OUT/summary.txt.
out=$1; rounds=$2; args=$3; shift 3
# A fresh OUT per comparison: summary.txt is appended to, so an old one would mix runs.
if [ -e $out/summary.txt ]; then echo "ab.sh: $out/summary.txt exists; use a fresh OUT" >&2; exit 2; fi
mkdir -p $out
for r in $(seq 1 $rounds); do
  for v in "$@"; do
    name=${v%%=*}; rest=${v#*=}; dir=${rest%%:*}; json=${rest#*:}
    d=$out/$name-$r
    sess=(); [ -n "$json" ] && sess=(--session "$json")
    (cd $dir && nice -n -15 timeout 1200 node --import tsx scripts/bench/run.ts $args --no-wait "${sess[@]}" --out $d > $d.log 2>&1)
    echo "== $name round $r" >> $out/summary.txt
    grep -E "^bench: \[|latency\]|\[fair\]" $d.log >> $out/summary.txt
  done
done
echo done >> $out/summary.txt
