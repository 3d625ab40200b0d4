#!/usr/bin/env bash
# Calibration / verification of the gkd WAN emulator (scripts/netem).
#
#   sudo scripts/netem/selftest.sh [--time SEC] [--out FILE] [--only ID,ID...]
#
# Brings the emulator up, checks the delay (ping RTT) and the loss rate, then
# for every scenario runs one TCP flow and `iperf3 -P 8` (iperf3 client in
# gkd-a, server in gkd-b, -R so data flows gkd-b -> gkd-a like a download) and
# prints a markdown table (also written to --out, default
# /tmp/gkd-netem-selftest.md).  Everything is bounded by timeouts; the
# emulator is torn down on exit / ctrl-C, and the forwarder also exits by
# itself after NETEM_LIFETIME (set to 1800 s here).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NETEM="$HERE/netem.sh"
NS_A="${NETEM_NS_A:-gkd-a}"
NS_B="${NETEM_NS_B:-gkd-b}"
DEV_A="${NETEM_DEV_A:-gkdtunA}"
DEV_B="${NETEM_DEV_B:-gkdtunB}"
ADDR_B="${NETEM_ADDR_B:-10.77.0.2}"
STATE="${NETEM_STATE_DIR:-/run/gkd-netem}"
export NETEM_LIFETIME="${NETEM_LIFETIME:-1800}"

T=10
OUT=/tmp/gkd-netem-selftest.md
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --time) T="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --only) ONLY=",$2,"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "selftest: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "selftest: must be run as root (network namespaces, TUN, sysctl)" >&2
  exit 2
fi
for tool in iperf3 ping node gcc ip; do
  command -v "$tool" >/dev/null || { echo "selftest: '$tool' not found (apt-get install iperf3 iputils-ping)" >&2; exit 2; }
done

WORK="$(mktemp -d /tmp/gkd-netem-selftest.XXXXXX)"
SRV=""
CHILD=""
cleanup() {
  trap - INT TERM
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; fi
  if [ -n "$SRV" ]; then kill "$SRV" 2>/dev/null || true; fi
  "$NETEM" down || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# Run a long command in the background and wait for it, so that INT/TERM sent
# to this script (not only to the terminal's process group) interrupt it at once.
bg() {
  local rc=0
  "$@" &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

say() { echo "selftest: $*" >&2; }

# counters of the forwarder (after `netem.sh stats --reset` at the start of a run)
fstat() { sed -n "s/^$1=//p" "$STATE/stats" | head -n1; }

tun_tx_dropped() { # packets the kernel dropped because the forwarder fell behind
  local a b
  a="$(ip -n "$NS_A" -s -j link show "$DEV_A" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].stats64.tx.dropped))')"
  b="$(ip -n "$NS_B" -s -j link show "$DEV_B" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s)[0].stats64.tx.dropped))')"
  echo $((a + b))
}

CLK_TCK="$(getconf CLK_TCK)"
# CPU time (user+sys ticks) of the forwarder; its write() to a TUN device also
# runs the receiving namespace's IP/TCP input path, which is counted here too
fwd_cpu_ticks() { awk '{print $14 + $15}' "/proc/$(cat "$STATE/fwd.pid")/stat"; }

PORT=5201
# run_iperf P -> sets IPERF_RES="MBITS RETRANS" (or "ERR 0")
run_iperf() {
  local p="$1" _
  PORT=$((PORT + 1))
  ip netns exec "$NS_B" timeout $((T + 40)) iperf3 -s -1 -B "$ADDR_B" -p "$PORT" >"$WORK/srv.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 50); do
    ip netns exec "$NS_B" ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  bg timeout $((T + 30)) ip netns exec "$NS_A" iperf3 -c "$ADDR_B" -p "$PORT" -t "$T" -P "$p" -R -J \
    --connect-timeout 5000 >"$WORK/cli.json" 2>"$WORK/cli.err" || true
  for _ in $(seq 1 50); do [ -d "/proc/$SRV" ] || break; sleep 0.1; done
  kill "$SRV" 2>/dev/null || true
  wait "$SRV" 2>/dev/null || true
  SRV=""
  IPERF_RES="$(node -e '
    const fs = require("fs");
    try {
      const j = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
      if (j.error) throw new Error(j.error);
      const mb = j.end.sum_received.bits_per_second / 1e6;
      const rt = j.end.sum_sent.retransmits ?? 0;
      console.log(mb.toFixed(1) + " " + rt);
    } catch (e) { console.error("iperf3 failed: " + e.message); console.log("ERR 0"); }
  ' "$WORK/cli.json")"
}

LOAD0="$(cut -d' ' -f1-3 /proc/loadavg)"
# ------------------------------------------------------------------ bring up
say "bringing the emulator up"
"$NETEM" up --cc cubic >/dev/null
FWD_MODE="$(grep -o 'rt=[0-9]* tick=[0-9.]*us' "$STATE/fwd.log" | tail -n1)"

ROWS=()
CHECKS=()

# ------------------------------------------------------------- delay check
"$NETEM" set delay=50 2>/dev/null
bg timeout 20 ip netns exec "$NS_A" ping -q -c 50 -i 0.02 "$ADDR_B" >"$WORK/ping" || true
PING_OUT="$(tail -n1 "$WORK/ping")"
CHECKS+=("delay=50 each way, idle: ping RTT min/avg/max/mdev = ${PING_OUT##*= }")
"$NETEM" set delay=50 rate=100 queue=50ms 2>/dev/null
bg timeout 20 ip netns exec "$NS_A" ping -q -c 50 -i 0.02 "$ADDR_B" >"$WORK/ping" || true
PING_OUT="$(tail -n1 "$WORK/ping")"
CHECKS+=("delay=50 rate=100 queue=50ms, idle: ping RTT min/avg/max/mdev = ${PING_OUT##*= }")

# -------------------------------------------------------------- loss check
# one-way loss per direction with a UDP stream (iperf3 counts lost datagrams),
# plus a rough round-trip figure from ping (iputils ping slows down when
# replies go missing, hence only 1000 pings at 10 ms)
run_udp() { # $1: "" (a->b) or -R (b->a) [$2: offered rate, default 20M]
  # -> sets UDP_RES="lost/total = pct", UDP_MBIT=received payload Mbit/s
  local _
  PORT=$((PORT + 1))
  ip netns exec "$NS_B" timeout 40 iperf3 -s -1 -B "$ADDR_B" -p "$PORT" >"$WORK/srv.log" 2>&1 &
  SRV=$!
  for _ in $(seq 1 50); do
    ip netns exec "$NS_B" ss -Hlun "sport = :$PORT" 2>/dev/null | grep -q . && break
    ip netns exec "$NS_B" ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q . && break
    sleep 0.1
  done
  local ov0 ov1
  ov0="$(udp_rcvbuf_errors)"
  # shellcheck disable=SC2086
  bg timeout 30 ip netns exec "$NS_A" iperf3 -c "$ADDR_B" -p "$PORT" -u -b "${2:-20M}" -l 1200 -t 5 -w 4M $1 -J \
    --connect-timeout 5000 >"$WORK/udp.json" 2>/dev/null || true
  ov1="$(udp_rcvbuf_errors)"
  for _ in $(seq 1 50); do [ -d "/proc/$SRV" ] || break; sleep 0.1; done
  kill "$SRV" 2>/dev/null || true
  wait "$SRV" 2>/dev/null || true
  SRV=""
  UDP_RES="$(node -e '
    try { const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).end.sum;
          console.log(s.lost_packets + "/" + s.packets + " = " + s.lost_percent.toFixed(2) + " %"); }
    catch (e) { console.log("failed"); }' "$WORK/udp.json")"
  # datagrams the receiving socket dropped (CPU-starved receiver) are counted
  # as lost by iperf3 too; show them so they are not blamed on the emulator
  [ "$ov1" = "$ov0" ] || UDP_RES="$UDP_RES (of which $((ov1 - ov0)) dropped by the receiving socket)"
  UDP_MBIT="$(node -e '
    try { const e = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).end;
          console.log(((e.sum_received ?? e.sum).bits_per_second / 1e6).toFixed(1)); }
    catch (e) { console.log("failed"); }' "$WORK/udp.json")"
}
udp_rcvbuf_errors() { # summed over both namespaces
  local n=0 ns v
  for ns in "$NS_A" "$NS_B"; do
    # shellcheck disable=SC2016
    v="$(ip netns exec "$ns" awk '/^Udp:/ { if (h) { for (i = 1; i <= NF; i++) if (k[i] == "RcvbufErrors") print $i } else { for (i = 1; i <= NF; i++) k[i] = $i; h = 1 } }' /proc/net/snmp)"
    n=$((n + ${v:-0}))
  done
  echo "$n"
}
"$NETEM" set delay=50 loss=1 seed=7 2>/dev/null
bg timeout 40 ip netns exec "$NS_A" ping -q -c 1000 -i 0.01 -W 1 "$ADDR_B" >"$WORK/ping" || true
LOSS_OUT="$(grep 'packet loss' "$WORK/ping" || true)"
CHECKS+=("loss=1 (each way): 1000 pings lost $(sed 's/.*received, //; s/ packet loss.*//' <<<"$LOSS_OUT") round trip (expected 1.99 %)")
run_udp ""; u1="$UDP_RES"; run_udp -R
CHECKS+=("loss=1: UDP 20 Mbit/s 5 s lost a->b $u1, b->a $UDP_RES")
"$NETEM" set delay=50 loss=0.1 seed=7 2>/dev/null
run_udp ""; u1="$UDP_RES"; run_udp -R
CHECKS+=("loss=0.1: UDP 20 Mbit/s 5 s lost a->b $u1, b->a $UDP_RES")

# -------------------------------------------------------------- rate check
# UDP payload of 1200 B rides in 1228 B IP packets: payload = 97.7 % of the IP rate
"$NETEM" set delay=50 rate=100 queue=50ms 2>/dev/null
run_udp -R 200M
CHECKS+=("rate=100: UDP offered 200 Mbit/s b->a, received $UDP_MBIT Mbit/s payload (expected 97.7)")
"$NETEM" set delay=50 rate=100 queue=50ms flow_rate=10 2>/dev/null
run_udp -R 30M
CHECKS+=("rate=100 flow_rate=10: one UDP flow offered 30 Mbit/s b->a, received $UDP_MBIT Mbit/s payload (expected 9.8)")

# --------------------------------------------------------------- scenarios
# id|description|cc|config|expected
SCEN=(
  "ceil|emulator ceiling: no delay, no loss, no limit|cubic||bottleneck = CPU"
  "ceil100|ceiling at 100 ms RTT, no limit|cubic|delay=50|well above 100"
  "a|100 ms RTT, 100 Mbit/s, queue 50 ms, no loss|cubic|delay=50 rate=100 queue=50ms|1 flow near 100"
  "b|(a) + 1 % loss each way|cubic|delay=50 rate=100 queue=50ms loss=1|1 flow a few (Mathis Reno 1.4), -P 8 much higher"
  "c|(a) + 0.1 % loss each way|cubic|delay=50 rate=100 queue=50ms loss=0.1|Mathis Reno 4.5 per flow"
  "d|(a) + per-flow cap 10 Mbit/s (shaper, 50 ms queue)|cubic|delay=50 rate=100 queue=50ms flow_rate=10|1 flow ~10, -P 8 ~80"
  "d2|(a) + per-flow policer 10 Mbit/s (20 ms burst)|cubic|delay=50 rate=100 queue=50ms flow_rate=10 flow_mode=police|below (d): policers hurt TCP"
  "e|(b) with BBR: 1 % loss each way|bbr|delay=50 rate=100 queue=50ms loss=1|BBR ignores random loss: near 100"
)

for s in "${SCEN[@]}"; do
  IFS='|' read -r id desc cc conf expect <<<"$s"
  if [ -n "$ONLY" ] && [[ "$ONLY" != *",$id,"* ]]; then continue; fi
  # shellcheck disable=SC2086
  "$NETEM" set $conf seed=42 2>/dev/null
  "$NETEM" cc "$cc"
  res=()
  for p in 1 8; do
    sleep 1 # let queues drain
    d0="$(tun_tx_dropped)"
    "$NETEM" stats --reset
    say "[$id] $desc, $cc, -P $p, ${T}s ..."
    c0="$(fwd_cpu_ticks)"; w0="$(date +%s%N)"
    run_iperf "$p"
    read -r mb rt <<<"$IPERF_RES"
    c1="$(fwd_cpu_ticks)"; w1="$(date +%s%N)"
    "$NETEM" stats >/dev/null
    d1="$(tun_tx_dropped)"
    cpu="$(( (c1 - c0) * 100000000000 / (CLK_TCK * (w1 - w0)) ))"
    lossr="$(node -e 'const [a,b,c,d]=process.argv.slice(1).map(Number);
      const f=(x,y)=>y?(100*x/y).toFixed(2):"-"; console.log(f(a,b)+"/"+f(c,d))' \
      "$(fstat ba_drop_loss)" "$(fstat ba_rx_pkts)" "$(fstat ab_drop_loss)" "$(fstat ab_rx_pkts)")"
    late="$(node -e 'const [a,b,c]=process.argv.slice(1).map(Number);
      console.log((a/1e3).toFixed(0)+"/"+(b/1e6).toFixed(1)+"/"+(c?(100*Number(process.argv[4])/c).toFixed(2):"0"))' \
      "$(fstat ba_late_avg_ns)" "$(fstat ba_late_max_ns)" "$(fstat ba_tx_pkts)" "$(fstat ba_late_over_1ms)")"
    res+=("$mb|$rt|$lossr|$(fstat ba_drop_queue)|$(fstat ba_drop_flow)|$((d1 - d0))|$late|$cpu")
    say "[$id] -P $p: $mb Mbit/s, retrans $rt"
  done
  ROWS+=("$id|$desc|$cc|$conf|$expect|${res[0]}|${res[1]}")
done

# ------------------------------------------------------------------ report
{
  echo "## gkd netem selftest — $(date -u '+%Y-%m-%d %H:%M UTC'), kernel $(uname -r), $(nproc) cores, iperf3 ${T}s, -R (data gkd-b -> gkd-a)"
  echo
  echo "forwarder: $FWD_MODE (SCHED_FIFO priority / release grid)"
  echo
  echo "load average at start: $LOAD0; at end: $(cut -d' ' -f1-3 /proc/loadavg) (the endpoints, the forwarder and anything else on the machine share the cores)"
  echo
  for c in "${CHECKS[@]}"; do echo "- $c"; done
  echo
  echo "| id | scenario | cc | 1 flow Mbit/s | -P 8 Mbit/s | expected | config |"
  echo "|---|---|---|---:|---:|---|---|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r id desc cc conf expect mb1 rt1 l1 q1 f1 u1 lt1 cp1 mb8 rt8 l8 q8 f8 u8 lt8 cp8 <<<"$r"
    echo "| $id | $desc | $cc | $mb1 | $mb8 | $expect | \`${conf:-(none)}\` |"
  done
  echo
  echo "Details per run (1 flow ; -P 8). retrans = TCP retransmitted segments; loss % = emulated random drops"
  echo "data dir / ack dir; queue/flow drops = drop-tail and per-flow-cap drops in the data direction;"
  echo "unemul = packets the kernel dropped at the TUN devices because the forwarder fell behind (should be 0);"
  echo "late = data-direction release lateness avg µs / max ms / % of packets > 1 ms late;"
  echo "fwd cpu = forwarder CPU time in % of one core over the run (includes the receive-side stack work done in its write())."
  echo
  echo "| id | retrans | loss % data/ack | queue drops | flow drops | unemul | late | fwd cpu % |"
  echo "|---|---|---|---|---|---|---|---|"
  for r in "${ROWS[@]}"; do
    IFS='|' read -r id desc cc conf expect mb1 rt1 l1 q1 f1 u1 lt1 cp1 mb8 rt8 l8 q8 f8 u8 lt8 cp8 <<<"$r"
    echo "| $id | $rt1 ; $rt8 | $l1 ; $l8 | $q1 ; $q8 | $f1 ; $f8 | $u1 ; $u8 | $lt1 ; $lt8 | $cp1 ; $cp8 |"
  done
} | tee "$OUT"
say "report written to $OUT"
