#!/usr/bin/env bash
# pgbench through Cutover's TCP mode next to HAProxy (mode tcp, nbthread 1), nginx (stream, 1 worker)
# and the database itself, in one interleaved run.
#
#   Deploy/bench/pgbench.sh [options]
#
# Starts a throwaway PostgreSQL 15 cluster on 127.0.0.1 (initdb as user postgres), initialises
# pgbench's tables, then for every rep runs `pgbench` against each target in turn, each rep starting
# one target later (direct A B C, then A B C direct, ...), so the machine's drift hits every target
# alike. Small round trips are where a TCP proxy's per-read cost shows: the default load is
# select-only (`-S`), one statement per transaction. Prints the median TPS per target and its ratio
# to direct and to HAProxy (the median of the ratios within a rep). Everything listens on 127.0.0.1
# and is stopped on exit. Runs as root (it drops to postgres for the cluster).
#
# Options
#   --reps N        repetitions (default 3)
#   --duration S    seconds per pgbench run (default 15)
#   --clients N     pgbench -c and -j (default 8)
#   --mode M        select (pgbench -S, default) or tpcb (pgbench's default read-write transaction)
#   --workers N     Cutover worker queues (default 1, as HAProxy nbthread 1)
#   --skip-build    use the existing .build/release/cutover
#   --out DIR       results (default /tmp/cutover-pgbench/YYYYmmdd-HHMMSS)
#
# Ports: BENCH_PG_PORT_BASE (default 18500): postgres +1, cutover +2, haproxy +3, nginx +4.
# Needs: postgresql-15 and postgresql-client-15 (pgbench), haproxy, nginx with the stream module.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

reps=3; duration=15; clients=8; mode=select; workers=1; build=1; out=""
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --reps) reps=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --clients) clients=$2; shift 2 ;;
        --mode) mode=$2; shift 2 ;;
        --workers) workers=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        --out) out=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
for n in "$reps" "$duration" "$clients" "$workers"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
case $mode in select) pgflags=(-S) ;; tpcb) pgflags=() ;; *) echo "--mode is select or tpcb" >&2; exit 2 ;; esac
[[ $(id -u) == 0 ]] || { echo "run as root (initdb runs as user postgres)" >&2; exit 2; }

PATH=$PATH:/usr/sbin:/sbin:/usr/lib/postgresql/15/bin
for tool in initdb pg_ctl pgbench haproxy nginx; do
    command -v "$tool" > /dev/null || { echo "$tool is missing" >&2; exit 1; }
done

base=${BENCH_PG_PORT_BASE:-18500}
PG_PORT=$((base + 1)); CUTOVER_PORT=$((base + 2)); HAPROXY_PORT=$((base + 3)); NGINX_PORT=$((base + 4))
out=${out:-/tmp/cutover-pgbench/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
log() { printf '[pgbench %s] %s\n' "$(date +%T)" "$*" >&2; }

if (( build )); then (cd "$ROOT" && swift build -c release > "$out/build.log" 2>&1) || { log "build failed: $out/build.log"; exit 1; }; fi
CUTOVER_BIN=$ROOT/.build/release/cutover

DB=$(mktemp -d); chown postgres:postgres "$DB"; chmod 700 "$DB"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
    runuser -u postgres -- pg_ctl -D "$DB/db" -m immediate -w stop > /dev/null 2>&1 || true
    rm -rf "$DB"
}
trap cleanup EXIT

log "starting PostgreSQL on $PG_PORT"
runuser -u postgres -- initdb -D "$DB/db" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 > "$out/initdb.log"
runuser -u postgres -- pg_ctl -D "$DB/db" -l "$DB/db.log" -w -t 30 \
    -o "-p $PG_PORT -k $DB -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" start > /dev/null
pgbench -h 127.0.0.1 -p "$PG_PORT" -U postgres -i -s 10 -q postgres > "$out/init.log" 2>&1

cat > "$out/cutover.json" <<EOF
{
  "listeners": [ { "name": "pg", "address": "127.0.0.1:$CUTOVER_PORT", "mode": "tcp", "profile": "pg" } ],
  "profiles": [ { "name": "pg", "endpoints": [ { "name": "primary", "address": "127.0.0.1:$PG_PORT" } ] } ],
  "access_log": "off",
  "workers": $workers
}
EOF
cat > "$out/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4096
defaults
    mode tcp
    timeout connect 5s
    timeout client 120s
    timeout server 120s
listen pg
    bind 127.0.0.1:$HAPROXY_PORT
    server primary 127.0.0.1:$PG_PORT
EOF
stream_load=""
[[ -f /usr/lib/nginx/modules/ngx_stream_module.so ]] && stream_load="load_module /usr/lib/nginx/modules/ngx_stream_module.so;"
cat > "$out/nginx.conf" <<EOF
$stream_load
worker_processes 1;
daemon off;
pid $out/nginx.pid;
error_log $out/nginx.error.log warn;
events { worker_connections 4096; }
stream { server { listen 127.0.0.1:$NGINX_PORT; proxy_pass 127.0.0.1:$PG_PORT; } }
EOF

"$CUTOVER_BIN" proxy --config "$out/cutover.json" > "$out/cutover.log" 2>&1 & pids+=($!)
haproxy -f "$out/haproxy.cfg" > "$out/haproxy.log" 2>&1 & pids+=($!)
nginx -c "$out/nginx.conf" > "$out/nginx.log" 2>&1 & pids+=($!)

targets=("direct:$PG_PORT" "cutover:$CUTOVER_PORT" "haproxy:$HAPROXY_PORT" "nginx:$NGINX_PORT")
for t in "${targets[@]}"; do
    deadline=$((SECONDS + 10))
    until pgbench -h 127.0.0.1 -p "${t#*:}" -U postgres -n -S -t 1 postgres > /dev/null 2>&1; do
        (( SECONDS < deadline )) || { log "${t%%:*} on ${t#*:} does not answer"; exit 1; }
        sleep 0.2
    done
done

log "$reps reps x ${duration}s, $clients clients, mode $mode, cutover workers $workers"
: > "$out/runs.tsv"
for rep in $(seq 1 "$reps"); do
    # Each rep starts one target later (as bench.sh does), so no target always runs first.
    shift_by=$(( (rep - 1) % ${#targets[@]} ))
    for t in "${targets[@]:shift_by}" "${targets[@]:0:shift_by}"; do
        name=${t%%:*}; port=${t#*:}
        tps=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n "${pgflags[@]}" -c "$clients" -j "$clients" \
                -T "$duration" postgres 2> "$out/$name-$rep.err" | awk '/^tps = / { print $3; exit }')
        [[ -n $tps ]] || { log "$name rep $rep: no result (see $out/$name-$rep.err)"; exit 1; }
        printf '%s\t%s\t%s\n' "$name" "$rep" "$tps" >> "$out/runs.tsv"
        log "$name rep $rep: $tps tps"
    done
done

python3 - "$out/runs.tsv" <<'PY' | tee "$out/summary.md"
import statistics, sys
runs = {}  # target -> {rep: tps}
for line in open(sys.argv[1]):
    name, rep, tps = line.split("\t")
    runs.setdefault(name, {})[rep] = float(tps)
def paired(name, reference):
    # The median over reps of the ratio within a rep: the machine's drift between reps cancels.
    return statistics.median(tps / runs[reference][rep] for rep, tps in runs[name].items())
print("| target | median TPS | ×direct | ×HAProxy |")
print("|---|---:|---:|---:|")
for name, values in runs.items():
    print(f"| {name} | {statistics.median(values.values()):,.0f} | {paired(name, 'direct'):.2f} | {paired(name, 'haproxy'):.2f} |")
print()
print("Ratios are medians over reps of the ratio within one rep, where the targets ran back to back.")
PY
log "results in $out"
