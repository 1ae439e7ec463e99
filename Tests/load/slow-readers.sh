#!/usr/bin/env bash
# 50 clients ask for a 100 MiB response (/bytes?n=) with a 4 KiB receive buffer and never read,
# for 10 s, while a normal client asks every 100 ms: the proxy's resident memory sampled every
# 100 ms must stay within 64 MiB of its start (the maximum is reported), every normal request
# served, every connection gone after the readers reset. About 20 s. Options: --clients N
# --size-mib N --hold S --bound-mib N.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
binary=()
[[ ${1-} == --binary ]] && { binary=(--binary "$2"); shift 2; }
exec python3 "$here/cutover_load.py" "${binary[@]}" --max-seconds 180 slow-readers "$@"
