#!/bin/bash
# Usage: ss-sample.sh OUT & (then a bench run; kill it after). Samples `ss -tinH` in the server namespace gkd-b every 250 ms: the gkd server tunnels (port 9990) and iperf3 -R senders (5201) side by side.
# sample ss -tin in gkd-b every 250 ms until killed
out=$1
while true; do
  echo "T $(date +%s.%N)" >> $out
  ip netns exec gkd-b ss -tinH state established 2>/dev/null >> $out
  sleep 0.25
done
