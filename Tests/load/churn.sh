#!/usr/bin/env bash
# 100,000 connect-request-close cycles (4 threads; half with Connection: close, half closed by the
# client after the answer): the proxy's open descriptors (/proc/PID/fd) and resident memory
# (VmRSS) after a 1,000-cycle warm-up, right after, and after a 5 s settle, which must be back to
# the start within 8 descriptors and 8 MiB. Needs ulimit -n >= 4096. A few minutes on a debug
# build. Options: --churns N --threads N --settle S --fd-tolerance N --rss-tolerance-mib N.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
binary=()
[[ ${1-} == --binary ]] && { binary=(--binary "$2"); shift 2; }
exec python3 "$here/cutover_load.py" "${binary[@]}" --max-seconds 900 churn "$@"
