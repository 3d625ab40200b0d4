#!/usr/bin/env bash
# Tear the emulated WAN down (idempotent). Same as `netem.sh down`.
exec "$(dirname "${BASH_SOURCE[0]}")/netem.sh" down "$@"
