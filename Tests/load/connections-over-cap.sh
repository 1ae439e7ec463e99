#!/usr/bin/env bash
# 12,000 silent connections against max_connections 8000 while a normal client (a new connection
# and GET / every 20 ms) keeps asking: served/refused/evicted from /metrics, the client's success
# ratio and p99. Needs ulimit -n >= 12,512 (this script and the proxy each; it raises the soft
# limit itself and says so when the hard limit is lower). About 30 s. Options: --connections N
# --cap N --hold S --interval S, --binary PATH; see cutover_load.py --help.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
binary=()
[[ ${1-} == --binary ]] && { binary=(--binary "$2"); shift 2; }
exec python3 "$here/cutover_load.py" "${binary[@]}" --max-seconds 180 connections-over-cap "$@"
