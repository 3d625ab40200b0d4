#!/usr/bin/env bash
# gkd WAN emulator: two network namespaces joined by a user-space TUN forwarder
# (scripts/netem/fwd.c) that applies delay / loss / rate + queue / per-flow cap.
#
#   netem.sh up   [--cc ALG] [--cc-a ALG] [--cc-b ALG] [--links N] [[L:]key=value ...]
#   netem.sh set  [--link L] [key=value ...]  replace link L's config live (SIGHUP)
#   netem.sh cut  L [--blackhole]      take link L down (its client-side device
#                                      goes down), or with --blackhole drop all
#                                      its packets and keep the device up
#   netem.sh restore L                 bring link L back with its config
#   netem.sh cc   ALG [ALG_B]          set TCP congestion control in gkd-a [and gkd-b]
#   netem.sh stats [--link L] [--reset]  dump forwarder counters (key=value) / zero them
#   netem.sh status
#   netem.sh down                      idempotent teardown
#   netem.sh run  [up args] -- CMD...  up, run CMD, always tear down (trap)
#
# Config keys (ms / % / Mbit/s; append .ab for gkd-a->gkd-b only, .ba for
# gkd-b->gkd-a only): delay loss rate queue flow_rate flow_queue flow_mode
# flow_burst seed.  See README.md.  Example, 100 ms RTT 100 Mbit/s 1 % loss:
#   netem.sh up --cc cubic delay=50 rate=100 queue=50ms loss=1
# Several links (multipath): link L is its own forwarder and TUN pair,
# 10.77.L.1 (dev gkdtunA<L>) <-> 10.77.L.2 (dev gkdtunB<L>); link 0 keeps the
# names above. Keys without L: apply to every link; L:key=value to link L only:
#   netem.sh up --links 2 queue=50ms delay=10 rate=50 1:delay=30 1:rate=20
#
# Environment: GKD_NETEM_PREFIX (gkd: namespaces <prefix>-a/<prefix>-b, state
# in /run/<prefix>-netem), NETEM_NS_A/NETEM_NS_B (override the namespace names),
# NETEM_ADDR_A/NETEM_ADDR_B (link 0: 10.77.0.1/10.77.0.2), NETEM_DEV_A/NETEM_DEV_B
# (gkdtunA/gkdtunB), NETEM_STATE_DIR (/run/gkd-netem), NETEM_LIFETIME (forwarder exits by itself
# after this many seconds, default 7200), NETEM_POOL (packet slots per
# direction, default 65536), NETEM_RT (SCHED_FIFO priority of the forwarder,
# default 10; 0 = normal scheduling), NETEM_TICK_US (release grid of the
# forwarder in microseconds, default 250; 0 = exact per-packet timers),
# NETEM_TCP_RMEM / NETEM_TCP_WMEM.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX="${GKD_NETEM_PREFIX:-gkd}"
case "$PREFIX" in *[!a-z0-9-]*|"") echo "netem: GKD_NETEM_PREFIX must be lower-case letters, digits and dashes, got '$PREFIX'" >&2; exit 2 ;; esac
NS_A="${NETEM_NS_A:-$PREFIX-a}"
NS_B="${NETEM_NS_B:-$PREFIX-b}"
DEV_A0="${NETEM_DEV_A:-gkdtunA}"
DEV_B0="${NETEM_DEV_B:-gkdtunB}"
ADDR_A0="${NETEM_ADDR_A:-10.77.0.1}"
ADDR_B0="${NETEM_ADDR_B:-10.77.0.2}"
STATE="${NETEM_STATE_DIR:-/run/$PREFIX-netem}"
LIFETIME="${NETEM_LIFETIME:-7200}"
POOL="${NETEM_POOL:-65536}"
RT="${NETEM_RT:-10}"
TICK_US="${NETEM_TICK_US:-250}"
TCP_RMEM="${NETEM_TCP_RMEM:-4096 131072 33554432}"
TCP_WMEM="${NETEM_TCP_WMEM:-4096 16384 33554432}"
BIN="$STATE/gkd-netem-fwd"
CC_ORIG="$STATE/allowed_cc.orig"
LINKS_FILE="$STATE/links"
MAX_LINKS=8

# use_link L: point CONF/STATS/PIDF/LOG/KVS and DEV_*/ADDR_* at link L (link 0: the
# single-link layout of before, so existing callers see no change).
use_link() {
  LINK="$1"
  if [ "$LINK" = 0 ]; then
    LSTATE="$STATE"; DEV_A="$DEV_A0"; DEV_B="$DEV_B0"; ADDR_A="$ADDR_A0"; ADDR_B="$ADDR_B0"
  else
    LSTATE="$STATE/link$LINK"; DEV_A="${DEV_A0}$LINK"; DEV_B="${DEV_B0}$LINK"
    ADDR_A="10.77.$LINK.1"; ADDR_B="10.77.$LINK.2"
  fi
  CONF="$LSTATE/netem.conf"; STATS="$LSTATE/stats"; PIDF="$LSTATE/fwd.pid"; LOG="$LSTATE/fwd.log"
  KVS="$LSTATE/kvs"
}
use_link 0

link_count() { cat "$LINKS_FILE" 2>/dev/null || echo 1; }

check_link() {
  case "$1" in ''|*[!0-9]*) fail "link must be a number, got '$1'" ;; esac
  [ "$1" -lt "$(link_count)" ] || fail "no link $1 (links: 0..$(( $(link_count) - 1 )))"
}

msg() { echo "netem: $*" >&2; }
fail() { msg "error: $*"; exit 1; }

require_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "netem: must be run as root (it creates network namespaces and TUN devices and sets sysctls)" >&2
    exit 2
  fi
}

ns_exists() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }

fwd_pid() {
  # prints the forwarder pid if it is running (and really is our forwarder)
  [ -f "$PIDF" ] || return 1
  local pid
  pid="$(cat "$PIDF" 2>/dev/null || true)"
  [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "gkd-netem-fwd" || return 1
  echo "$pid"
}

stat_val() { sed -n "s/^$1=//p" "$STATS" 2>/dev/null | head -n1; }

dump_stats() {
  # $1: USR1 (dump) or USR2 (zero the counters, then dump)
  local pid before _
  pid="$(fwd_pid)" || fail "forwarder is not running"
  before="$(stat_val stats_seq)"
  kill "-${1:-USR1}" "$pid"
  for _ in $(seq 1 100); do
    [ "$(stat_val stats_seq)" != "$before" ] && return 0
    sleep 0.02
  done
  fail "forwarder did not write stats"
}

write_conf() {
  # validate with the forwarder binary first, then replace the config atomically
  local tmp="$CONF.tmp" kv desc
  : >"$tmp"
  for kv in "$@"; do
    case "$kv" in
      *=*) echo "$kv" >>"$tmp" ;;
      *) rm -f "$tmp"; fail "bad config token '$kv' (expected key=value)" ;;
    esac
  done
  if ! desc="$("$BIN" --check "$tmp" 2>&1)"; then
    rm -f "$tmp"
    fail "invalid config: ${desc#gkd-netem-fwd: config: }"
  fi
  mv -f "$tmp" "$CONF"
}

allow_cc() {
  # add an algorithm to the GLOBAL allowed list (saved once, restored by down)
  local alg="$1" allowed avail
  avail="$(sysctl -n net.ipv4.tcp_available_congestion_control)"
  if ! grep -qw "$alg" <<<"$avail"; then
    modprobe "tcp_$alg" 2>/dev/null || true
    avail="$(sysctl -n net.ipv4.tcp_available_congestion_control)"
    grep -qw "$alg" <<<"$avail" || fail "congestion control '$alg' not available (have: $avail)"
  fi
  allowed="$(sysctl -n net.ipv4.tcp_allowed_congestion_control)"
  [ -f "$CC_ORIG" ] || echo "$allowed" >"$CC_ORIG"
  if ! grep -qw "$alg" <<<"$allowed"; then
    sysctl -q -w net.ipv4.tcp_allowed_congestion_control="$allowed $alg" >/dev/null
  fi
}

set_cc() {
  local a="$1" b="${2:-$1}"
  allow_cc "$a"
  allow_cc "$b"
  ip netns exec "$NS_A" sysctl -q -w net.ipv4.tcp_congestion_control="$a" >/dev/null
  ip netns exec "$NS_B" sysctl -q -w net.ipv4.tcp_congestion_control="$b" >/dev/null
}

cmd_down() {
  require_root
  local pid _ ns p l
  for l in $(seq 0 $((MAX_LINKS - 1))); do
    use_link "$l"
    if pid="$(fwd_pid)"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do [ -d "/proc/$pid" ] || break; sleep 0.05; done
      if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$PIDF"
  done
  use_link 0
  rm -f "$LINKS_FILE"
  for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
      # processes still living in our namespaces were started there for the run
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
      for _ in $(seq 1 20); do [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break; sleep 0.05; done
      for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  if [ -f "$CC_ORIG" ]; then
    sysctl -q -w net.ipv4.tcp_allowed_congestion_control="$(cat "$CC_ORIG")" >/dev/null 2>&1 \
      || msg "warning: could not restore tcp_allowed_congestion_control"
    rm -f "$CC_ORIG"
  fi
  return 0
}

cmd_up() {
  require_root
  local cc_a="cubic" cc_b="" kvs=() links=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --cc) cc_a="$2"; cc_b="$2"; shift 2 ;;
      --cc-a) cc_a="$2"; shift 2 ;;
      --cc-b) cc_b="$2"; shift 2 ;;
      --links) links="$2"; shift 2 ;;
      *=*) kvs+=("$1"); shift ;;
      *) fail "up: unexpected argument '$1'" ;;
    esac
  done
  case "$links" in ''|*[!0-9]*) fail "--links must be a number 1-$MAX_LINKS" ;; esac
  [ "$links" -ge 1 ] && [ "$links" -le "$MAX_LINKS" ] || fail "--links must be 1-$MAX_LINKS, got $links"
  local kv
  for kv in "${kvs[@]+"${kvs[@]}"}"; do
    case "$kv" in [0-9]:*) [ "${kv%%:*}" -lt "$links" ] || fail "'$kv' is for link ${kv%%:*}, but there are $links link(s)" ;; esac
  done
  [ -n "$cc_b" ] || cc_b="$cc_a"
  command -v gcc >/dev/null || fail "gcc not found (apt-get install gcc)"
  command -v ip >/dev/null || fail "ip not found (apt-get install iproute2)"
  [ -c /dev/net/tun ] || fail "/dev/net/tun missing"

  cmd_down >/dev/null 2>&1 || true
  trap 'rc=$?; if [ $rc -ne 0 ]; then msg "setup failed, tearing down"; cmd_down || true; fi' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  mkdir -p "$STATE"
  gcc -O2 -Wall -std=gnu11 -o "$BIN.new" "$HERE/fwd.c" -lm || fail "compiling fwd.c failed"
  mv -f "$BIN.new" "$BIN"
  echo "$links" >"$LINKS_FILE"

  ip netns add "$NS_A"
  ip netns add "$NS_B"
  ip -n "$NS_A" link set lo up
  ip -n "$NS_B" link set lo up

  local l
  for l in $(seq 0 $((links - 1))); do
    use_link "$l"
    mkdir -p "$LSTATE"
    link_kvs "$l" "${kvs[@]+"${kvs[@]}"}" >"$KVS"
    mapfile -t lkvs <"$KVS"
    write_conf "${lkvs[@]+"${lkvs[@]}"}"
    rm -f "$STATS"
    start_link "$links"
  done
  use_link 0
  for ns in "$NS_A" "$NS_B"; do
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_rmem="$TCP_RMEM" >/dev/null
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_wmem="$TCP_WMEM" >/dev/null
    # no cached ssthresh/RTT between runs: every measurement starts cold
    ip netns exec "$ns" sysctl -q -w net.ipv4.tcp_no_metrics_save=1 >/dev/null
  done
  set_cc "$cc_a" "$cc_b"
  trap - EXIT INT TERM
  for l in $(seq 0 $((links - 1))); do
    use_link "$l"
    msg "up: link $l: $NS_A ($ADDR_A dev $DEV_A) <-> forwarder pid $(cat "$PIDF") <-> $NS_B ($ADDR_B dev $DEV_B); config: $(tail -n1 "$LOG" | sed 's/.*config #[0-9]*: //')"
  done
  use_link 0
  msg "cc $cc_a/$cc_b"
}

# link_kvs L KV...: the config of link L, one key=value a line: the keys without
# a link prefix, then link L's own (L:key=value), a later key replacing an earlier one.
link_kvs() {
  local l="$1" kv
  shift
  for kv in "$@"; do
    case "$kv" in
      [0-9]:*) if [ "${kv%%:*}" = "$l" ]; then echo "${kv#*:}"; fi ;;
      *) echo "$kv" ;;
    esac
  done | awk -F= '{ k[$1] = $0; if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } } END { for (i = 0; i < n; i++) print k[order[i]] }'
}

# start_link LINKS: the forwarder of the current link, its devices and addresses;
# with several links, policy routing so each source address leaves by its own link
# (as a multihomed host is set up: `ip rule add from ADDR table T`).
start_link() {
  local links="$1" _ ok=0 table=$((100 + LINK))
  setsid "$BIN" --ns-a "/run/netns/$NS_A" --dev-a "$DEV_A" --ns-b "/run/netns/$NS_B" --dev-b "$DEV_B" \
    --conf "$CONF" --stats "$STATS" --pool "$POOL" --lifetime "$LIFETIME" --rt "$RT" --tick-us "$TICK_US" \
    </dev/null >>"$LOG" 2>&1 &
  echo $! >"$PIDF"
  for _ in $(seq 1 100); do
    if [ -f "$STATS" ] && ip -n "$NS_A" link show "$DEV_A" >/dev/null 2>&1 \
      && ip -n "$NS_B" link show "$DEV_B" >/dev/null 2>&1; then ok=1; break; fi
    fwd_pid >/dev/null || break
    sleep 0.05
  done
  [ $ok = 1 ] || { tail -n 5 "$LOG" >&2 || true; fail "forwarder of link $LINK did not start"; }
  ip netns exec "$NS_A" sysctl -q -w "net.ipv6.conf.$DEV_A.disable_ipv6=1" >/dev/null 2>&1 || true
  ip netns exec "$NS_B" sysctl -q -w "net.ipv6.conf.$DEV_B.disable_ipv6=1" >/dev/null 2>&1 || true
  ip -n "$NS_A" addr add "$ADDR_A" peer "$ADDR_B" dev "$DEV_A"
  ip -n "$NS_B" addr add "$ADDR_B" peer "$ADDR_A" dev "$DEV_B"
  ip -n "$NS_A" link set "$DEV_A" mtu 1500 txqueuelen 10000 up
  ip -n "$NS_B" link set "$DEV_B" mtu 1500 txqueuelen 10000 up
  if [ "$links" -gt 1 ]; then
    link_routes
    local ns
    for ns in "$NS_A" "$NS_B"; do
      # a packet to link 0's address may arrive on link 1: no reverse-path filtering
      for k in all default "$DEV_A" "$DEV_B"; do ip netns exec "$ns" sysctl -q -w "net.ipv4.conf.$k.rp_filter=0" >/dev/null 2>&1 || true; done
    done
  fi
}

# link_routes: the current link's policy route on the client side (again after a
# cut: a device going down takes its routes with it). A packet from link L's address
# leaves by link L, or, while that link is down, not at all (`unreachable`, as when
# a real interface is gone) instead of by another link. The server side needs no
# rule: its replies go by destination, over the peer route of the link they came in on.
link_routes() {
  local table=$((100 + LINK))
  ip -n "$NS_A" rule del from "$ADDR_A" table "$table" 2>/dev/null || true
  ip -n "$NS_A" rule add from "$ADDR_A" table "$table" pref $((1000 + LINK))
  ip -n "$NS_A" route replace default dev "$DEV_A" table "$table"
  ip -n "$NS_A" route replace unreachable default table "$table" metric 1000
}

cmd_set() {
  require_root
  if [ "${1:-}" = "--link" ]; then check_link "${2:-}"; use_link "$2"; shift 2; fi
  reload "$@"
  printf '%s\n' "$@" >"$KVS"
}

# reload KV...: give the current link's forwarder this config (SIGHUP) and wait for it.
reload() {
  local pid gen _
  pid="$(fwd_pid)" || fail "forwarder of link $LINK is not running (run: $0 up)"
  gen="$(stat_val conf_gen)"
  local failed_before
  failed_before="$(grep -c 'reload failed' "$LOG" 2>/dev/null || true)"
  write_conf "$@"
  kill -HUP "$pid"
  for _ in $(seq 1 100); do
    if [ "$(grep -c 'reload failed' "$LOG" 2>/dev/null || true)" != "$failed_before" ]; then
      fail "$(grep 'reload failed' "$LOG" | tail -n1)"
    fi
    if [ "$(stat_val conf_gen)" != "$gen" ]; then
      msg "config: $(grep 'reloaded config' "$LOG" | tail -n1 | sed 's/.*config #[0-9]*: //')"
      return 0
    fi
    sleep 0.02
  done
  fail "forwarder did not acknowledge the new config"
}

# cut L [--blackhole]: link L stops carrying packets. By default its client-side
# device goes down (an interface that disappears: its address leaves the interface
# list, sockets bound to it get errors); --blackhole keeps the device up and drops
# every packet both ways (a path that silently stops: only timeouts notice).
cmd_cut() {
  require_root
  check_link "${1:-}"
  use_link "$1"
  if [ "${2:-}" = "--blackhole" ]; then
    mapfile -t lkvs <"$KVS"
    reload "${lkvs[@]+"${lkvs[@]}"}" loss=100
    msg "link $LINK: black hole (loss=100 both ways)"
  else
    [ -z "${2:-}" ] || fail "cut: unexpected argument '$2' (--blackhole?)"
    ip -n "$NS_A" link set "$DEV_A" down
    msg "link $LINK: $DEV_A down in $NS_A"
  fi
}

# restore L: undo a cut (device up, its routes back, its own config again).
cmd_restore() {
  require_root
  check_link "${1:-}"
  use_link "$1"
  ip -n "$NS_A" link set "$DEV_A" up
  if [ "$(link_count)" -gt 1 ]; then link_routes; fi
  mapfile -t lkvs <"$KVS"
  reload "${lkvs[@]+"${lkvs[@]}"}"
  msg "link $LINK: restored"
}

cmd_status() {
  local pid l
  for l in $(seq 0 $(( $(link_count) - 1 ))); do
    use_link "$l"
    if pid="$(fwd_pid)"; then
      echo "link $l forwarder: running, pid $pid"
      echo "link $l config file $CONF: $(tr '\n' ' ' <"$CONF")"
    else
      echo "link $l forwarder: not running"
    fi
  done
  use_link 0
  for ns in "$NS_A" "$NS_B"; do
    if ns_exists "$ns"; then
      echo "$ns: $(ip -n "$ns" -brief addr show 2>/dev/null | grep -v '^lo' | tr -s ' ') cc=$(ip netns exec "$ns" sysctl -n net.ipv4.tcp_congestion_control)"
    else
      echo "$ns: absent"
    fi
  done
  echo "global tcp_allowed_congestion_control: $(sysctl -n net.ipv4.tcp_allowed_congestion_control)"
}

cmd_run() {
  require_root
  local up=()
  while [ $# -gt 0 ] && [ "$1" != "--" ]; do up+=("$1"); shift; done
  [ "${1:-}" = "--" ] || fail "run: missing -- CMD"
  shift
  [ $# -gt 0 ] || fail "run: missing CMD"
  RUN_CHILD=""
  trap 'cmd_down' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  cmd_up "${up[@]+"${up[@]}"}"
  # CMD runs in the background (stdin from /dev/null) and we wait for it, so
  # that INT/TERM sent to this script alone stop CMD and tear down at once.
  trap '[ -n "$RUN_CHILD" ] && kill -TERM "$RUN_CHILD" 2>/dev/null; cmd_down' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  local rc=0
  "$@" &
  RUN_CHILD=$!
  wait "$RUN_CHILD" || rc=$?
  RUN_CHILD=""
  exit "$rc"
}

sub="${1:-}"
[ $# -gt 0 ] && shift
case "$sub" in
  up) cmd_up "$@" ;;
  down) cmd_down "$@" ;;
  set) cmd_set "$@" ;;
  cc) require_root; [ $# -ge 1 ] || fail "cc: ALG [ALG_B]"; set_cc "$@" ;;
  cut) cmd_cut "$@" ;;
  restore) cmd_restore "$@" ;;
  stats)
    require_root
    if [ "${1:-}" = "--link" ]; then check_link "${2:-}"; use_link "$2"; shift 2; fi
    if [ "${1:-}" = "--reset" ]; then dump_stats USR2; else dump_stats USR1; grep -v '^stats_seq' "$STATS"; fi ;;
  status) require_root; cmd_status ;;
  run) cmd_run "$@" ;;
  *) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; [ -z "$sub" ] || [ "$sub" = help ] || [ "$sub" = -h ] || exit 2 ;;
esac
