#!/usr/bin/env bash
# Bring the emulated WAN up (see netem.sh / README.md). Same arguments as `netem.sh up`:
#   sudo scripts/netem/setup.sh [--cc cubic|bbr] delay=50 rate=100 queue=50ms loss=1 ...
exec "$(dirname "${BASH_SOURCE[0]}")/netem.sh" up "$@"
