#!/bin/bash
out=/tmp/startab; mkdir -p $out
cd /work/wt14
for r in 1 2; do
  for st in 16 8; do
    d=$out/s$st-$r
    GKD_START_TUNNELS=$st nice -n -15 timeout 1500 node --import tsx scripts/bench/run.ts --only a,c,d,e --tools direct,gkd --tunnels auto --no-wait --out $d > $d.log 2>&1
    echo "== start $st round $r" >> $out/summary.txt
    grep -E "^bench: \[" $d.log >> $out/summary.txt
  done
done
echo done >> $out/summary.txt
