#!/usr/bin/env bash
# Cutover next to HAProxy and nginx, on one machine, in one interleaved wrk run.
#
#   Deploy/bench/bench.sh [--quick] [options]
#
# Starts one nginx with two backends (blue, green), then Cutover twice (one worker queue, and its
# default of one per CPU), HAProxy three times (nbthread 1; one thread per CPU, as Cutover's default
# has workers; and nbthread 1 adding the headers Cutover adds, "haproxy-fwd") and nginx (1 worker)
# as proxies in front of blue with green as the standby, each with an HTTP and a TCP listener. For
# every rep, for every load, it runs wrk against each proxy in turn (A B C D, then B C D A in the
# next rep, ...), waiting for a quiet machine before each run, and records req/s, MiB/s, p50/p99
# latency, errors, the proxy's CPU and RSS, and the CPU the rest of the machine used meanwhile. Then
# it holds 10,000 idle keep-alive connections open through each proxy and records its RSS. Prints a
# markdown table of medians with Cutover/HAProxy and Cutover/nginx ratios, each the median of the
# ratios within a rep, so that the machine's drift between reps cancels (reps another tenant
# disturbed are left out). Everything listens on 127.0.0.1 and is stopped on exit.
#
# Options
#   --quick            smoke run: 1 rep of 3 s, 1-s warm-ups, shorter quiet wait
#   --reps N           repetitions (default 3); figures are medians over reps
#   --duration S       seconds per wrk run (default 10)
#   --threads N        wrk -t (default 1)
#   --warmup S         unrecorded wrk run per target and listener before rep 1 (default 2)
#   --idle-count N     idle keep-alive connections for the memory figure (default 10000; 0 skips)
#   --direct           also measure the blue backend without a proxy (the ceiling)
#   --max-busy PCT     before each run, wait until the machine's busy CPU over 1 s is <= PCT
#                      (100 = one core; default 30) ...
#   --max-wait S       ... but at most S seconds (default 60)
#   --out DIR          results (default /tmp/cutover-bench-results/YYYYmmdd-HHMMSS)
#   --skip-build       use the existing .build/release/cutover
#   --no-install       never run apt-get; fail if a tool is missing
#
# Ports (127.0.0.1, all must be free; override with environment variables):
#   BENCH_PORT_BASE (default 18100), from which: BENCH_BLUE_PORT=+1 BENCH_GREEN_PORT=+2,
#   BENCH_CUTOVER1_PORT=+11 BENCH_CUTOVER1_TCP_PORT=+12, BENCH_CUTOVER_PORT=+21
#   BENCH_CUTOVER_TCP_PORT=+22, BENCH_HAPROXY_PORT=+31 BENCH_HAPROXY_TCP_PORT=+32,
#   BENCH_NGINX_PORT=+41 BENCH_NGINX_TCP_PORT=+42, BENCH_HAPROXYN_PORT=+51 BENCH_HAPROXYN_TCP_PORT=+52
#   (HAProxy with one thread per CPU; not started on one CPU), BENCH_HAPROXYF_PORT=+61
#   BENCH_HAPROXYF_TCP_PORT=+62 (haproxy-fwd; its TCP listener is not measured: TCP has no headers).
#
# Needs: bash, python3, curl, ss (iproute2); installs nginx, haproxy, wrk and nginx's stream
# module with apt-get when missing (as root, or with sudo). Re-print a finished run with
#   python3 Deploy/bench/summarize.py DIR
set -euo pipefail
umask 022
shopt -u patsub_replacement 2> /dev/null || true  # "&" in a rendered value stays "&"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PY="${PYTHON:-python3}"

reps=3; duration=10; threads=1; warmup=2; idle_count=10000; direct=0; max_busy=30; max_wait=60
out=""; build=1; install=1; pause=1
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit "${1:-0}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        --quick) reps=1; duration=3; warmup=1; max_wait=20; shift ;;
        --reps) reps=$2; shift 2 ;;
        --duration) duration=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --idle-count) idle_count=$2; shift 2 ;;
        --direct) direct=1; shift ;;
        --max-busy) max_busy=$2; shift 2 ;;
        --max-wait) max_wait=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --skip-build) build=0; shift ;;
        --no-install) install=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "unknown option: $1" >&2; usage 2 ;;
    esac
done
for n in "$reps" "$duration" "$threads" "$warmup" "$idle_count" "$max_busy" "$max_wait"; do
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "not a whole number: $n" >&2; exit 2; }
done
(( reps >= 1 && duration >= 1 && threads >= 1 )) || { echo "--reps, --duration, --threads must be >= 1" >&2; exit 2; }

base=${BENCH_PORT_BASE:-18100}
BLUE_PORT=${BENCH_BLUE_PORT:-$((base + 1))}
GREEN_PORT=${BENCH_GREEN_PORT:-$((base + 2))}
CUTOVER1_PORT=${BENCH_CUTOVER1_PORT:-$((base + 11))}
CUTOVER1_TCP_PORT=${BENCH_CUTOVER1_TCP_PORT:-$((base + 12))}
CUTOVER_PORT=${BENCH_CUTOVER_PORT:-$((base + 21))}
CUTOVER_TCP_PORT=${BENCH_CUTOVER_TCP_PORT:-$((base + 22))}
HAPROXY_PORT=${BENCH_HAPROXY_PORT:-$((base + 31))}
HAPROXY_TCP_PORT=${BENCH_HAPROXY_TCP_PORT:-$((base + 32))}
NGINX_PORT=${BENCH_NGINX_PORT:-$((base + 41))}
NGINX_TCP_PORT=${BENCH_NGINX_TCP_PORT:-$((base + 42))}
HAPROXYN_PORT=${BENCH_HAPROXYN_PORT:-$((base + 51))}
HAPROXYN_TCP_PORT=${BENCH_HAPROXYN_TCP_PORT:-$((base + 52))}
HAPROXYF_PORT=${BENCH_HAPROXYF_PORT:-$((base + 61))}
HAPROXYF_TCP_PORT=${BENCH_HAPROXYF_TCP_PORT:-$((base + 62))}

out=${out:-/tmp/cutover-bench-results/$(date +%Y%m%d-%H%M%S)}
RUN=$out/run      # rendered configs, logs, pid list
WWW=$out/www      # the 1 MiB file
mkdir -p "$out/raw" "$RUN/backends-tmp" "$RUN/nginx-proxy-tmp" "$WWW"

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- tools -----------------------------------------------------------------------------------------
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo > /dev/null; then sudo "$@"; else return 1; fi; }
apt_updated=0
apt_install() {
    (( install )) || return 1
    command -v apt-get > /dev/null || return 1
    if (( ! apt_updated )); then as_root apt-get update -qq || return 1; apt_updated=1; fi
    log "installing $*"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" > "$RUN/apt.log" 2>&1
}
PATH=$PATH:/usr/sbin:/sbin
for tool in nginx:nginx haproxy:haproxy wrk:wrk; do
    command -v "${tool%%:*}" > /dev/null || apt_install "${tool#*:}" || die "${tool%%:*} is missing (apt-get install ${tool#*:})"
done
for tool in python3 curl ss; do command -v "$tool" > /dev/null || die "$tool is missing"; done

# nginx's TCP proxy needs the stream module: built in, or Debian's dynamic libnginx-mod-stream.
STREAM_LOAD=""; stream=0
nginx_flags=$(nginx -V 2>&1)
if grep -q -- '--with-stream\( \|$\)' <<< "$nginx_flags"; then
    stream=1
elif grep -q -- '--with-stream=dynamic' <<< "$nginx_flags"; then
    module=/usr/lib/nginx/modules/ngx_stream_module.so
    [[ -f $module ]] || apt_install libnginx-mod-stream || true
    if [[ -f $module ]]; then stream=1; STREAM_LOAD="load_module $module;"; fi
fi
(( stream )) || log "nginx has no stream module: nginx is left out of the TCP-mode load"

if (( build )); then
    log "swift build -c release (log: $RUN/build.log)"
    (cd "$ROOT" && swift build -c release) > "$RUN/build.log" 2>&1 || { tail -n 30 "$RUN/build.log" >&2; die "build failed"; }
fi
CUTOVER_BIN=$ROOT/.build/release/cutover
[[ -x $CUTOVER_BIN ]] || die "$CUTOVER_BIN not built (drop --skip-build)"

# Every process may need thousands of descriptors (10,000 idle connections): soft limit = hard.
ulimit -n "$(ulimit -Hn)" 2> /dev/null || true
(( $(ulimit -n) >= idle_count + 200 )) || log "fd limit $(ulimit -n) is low for $idle_count idle connections"

# --- ports -----------------------------------------------------------------------------------------
ports=(BLUE_PORT GREEN_PORT CUTOVER1_PORT CUTOVER1_TCP_PORT CUTOVER_PORT CUTOVER_TCP_PORT
       HAPROXY_PORT HAPROXY_TCP_PORT NGINX_PORT NGINX_TCP_PORT HAPROXYN_PORT HAPROXYN_TCP_PORT
       HAPROXYF_PORT HAPROXYF_TCP_PORT)
read -r eph_lo eph_hi < /proc/sys/net/ipv4/ip_local_port_range
declare -A seen_port
for var in "${ports[@]}"; do
    p=${!var}
    [[ "$p" =~ ^[0-9]+$ ]] && (( p > 0 && p < 65536 )) || die "BENCH_$var=$p is not a port"
    [[ -z ${seen_port[$p]:-} ]] || die "BENCH_$var and BENCH_${seen_port[$p]} are both $p"
    seen_port[$p]=$var
    [[ -z $(ss -Hltn "sport = :$p") ]] || die "port $p (BENCH_$var) is in use; set BENCH_PORT_BASE or BENCH_$var"
    (( p < eph_lo || p > eph_hi )) || log "warning: port $p (BENCH_$var) is in the ephemeral range $eph_lo-$eph_hi"
done

# --- processes -------------------------------------------------------------------------------------
declare -A PID
started=()
stop_all() {
    local status=$? name pid i
    for (( i = ${#started[@]} - 1; i >= 0; i-- )); do
        name=${started[i]}; pid=${PID[$name]}
        kill -TERM "$pid" 2> /dev/null || true
    done
    for name in "${started[@]}"; do
        pid=${PID[$name]}
        for (( i = 0; i < 50; i++ )); do kill -0 "$pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2> /dev/null || true
        wait "$pid" 2> /dev/null || true
    done
    (( ${#started[@]} == 0 )) || log "stopped: ${started[*]}"
    exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

start() { # start NAME COMMAND...: runs in the foreground of a background job, pid recorded
    local name=$1; shift
    "$@" > "$RUN/$name.log" 2>&1 &
    PID[$name]=$!
    started+=("$name")
    echo "$name ${PID[$name]} $*" >> "$RUN/pids"
}

wait_http() { # wait_http NAME PORT: until GET / answers 200, while NAME is alive
    local name=$1 port=$2 i
    for (( i = 0; i < 100; i++ )); do
        kill -0 "${PID[$name]}" 2> /dev/null || die "$name exited; see $RUN/$name.log"
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/" || true) == 200 ]] && return 0
        sleep 0.1
    done
    die "$name does not answer on 127.0.0.1:$port; see $RUN/$name.log"
}

render() { # render TEMPLATE DEST: replace @NAME@ with the value of shell variable NAME
    local text var
    text=$(< "$1")
    for var in RUN WWW SMALL_BODY BLUE_PORT GREEN_PORT HAPROXY_PORT HAPROXY_TCP_PORT HAPROXY_THREADS \
               HAPROXY_FORWARDING NGINX_PORT NGINX_TCP_PORT HTTP_PORT TCP_PORT WORKERS STREAM_LOAD STREAM_BLOCK; do
        text=${text//@$var@/${!var:-}}
    done
    printf '%s\n' "$text" > "$2"
}

# The small body is exactly 100 bytes; the big one 1 MiB of random bytes (not compressible).
SMALL_BODY=$(printf 'cutover bench: a small response of one hundred bytes %0*d' 47 0)
(( ${#SMALL_BODY} == 100 )) || die "small body is ${#SMALL_BODY} bytes"
[[ -f $WWW/big.bin ]] || head -c 1048576 /dev/urandom > "$WWW/big.bin"

STREAM_BLOCK=""
if (( stream )); then
    STREAM_BLOCK="stream {
    upstream tcp {
        server 127.0.0.1:$BLUE_PORT;
        server 127.0.0.1:$GREEN_PORT backup;
    }
    server {
        listen 127.0.0.1:$NGINX_TCP_PORT backlog=4096;
        proxy_pass tcp;
    }
}"
fi
render "$HERE/backends.nginx.conf" "$RUN/backends.nginx.conf"
render "$HERE/proxy.nginx.conf" "$RUN/proxy.nginx.conf"
ncpu=$(nproc)
HAPROXY_THREADS=1 render "$HERE/haproxy.cfg" "$RUN/haproxy.cfg"
HAPROXY_PORT=$HAPROXYN_PORT HAPROXY_TCP_PORT=$HAPROXYN_TCP_PORT HAPROXY_THREADS=$ncpu render "$HERE/haproxy.cfg" "$RUN/haproxy-${ncpu}t.cfg"
# What Cutover does to every exchange (docs/http.md), which the plain HAProxy above does not: the
# client in X-Forwarded-For and Forwarded, X-Forwarded-Proto, Via on the request and the response,
# a request id made for each request. Measured against this, the ratio compares equal work.
haproxy_forwarding='    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header Forwarded "for=%[src];proto=http"
    http-request add-header Via "1.1 haproxy"
    http-response add-header Via "1.1 haproxy"
    unique-id-format %{+X}o%pid-%rt-%Ts
    unique-id-header X-Request-Id'
HAPROXY_PORT=$HAPROXYF_PORT HAPROXY_TCP_PORT=$HAPROXYF_TCP_PORT HAPROXY_THREADS=1 HAPROXY_FORWARDING=$haproxy_forwarding \
    render "$HERE/haproxy.cfg" "$RUN/haproxy-fwd.cfg"
HTTP_PORT=$CUTOVER1_PORT TCP_PORT=$CUTOVER1_TCP_PORT WORKERS=1 render "$HERE/cutover.json" "$RUN/cutover-1w.json"
HTTP_PORT=$CUTOVER_PORT TCP_PORT=$CUTOVER_TCP_PORT WORKERS=0 render "$HERE/cutover.json" "$RUN/cutover-default.json"

log "starting backends and proxies (files in $RUN)"
start backends nginx -p "$RUN" -e "$RUN/backends.error.log" -c "$RUN/backends.nginx.conf" -g 'daemon off;'
wait_http backends "$BLUE_PORT"; wait_http backends "$GREEN_PORT"

# Targets in measuring order: name, HTTP port, TCP port (empty: no TCP listener), process name.
targets=()
declare -A HTTP TCP PROC
add_target() { targets+=("$1"); HTTP[$1]=$2; TCP[$1]=$3; PROC[$1]=$4; }
(( direct )) && add_target direct "$BLUE_PORT" "" ""
start cutover-1w "$CUTOVER_BIN" proxy --config "$RUN/cutover-1w.json"
add_target cutover-1w "$CUTOVER1_PORT" "$CUTOVER1_TCP_PORT" cutover-1w
start "cutover-${ncpu}w" "$CUTOVER_BIN" proxy --config "$RUN/cutover-default.json"
add_target "cutover-${ncpu}w" "$CUTOVER_PORT" "$CUTOVER_TCP_PORT" "cutover-${ncpu}w"
start haproxy haproxy -db -f "$RUN/haproxy.cfg"
add_target haproxy "$HAPROXY_PORT" "$HAPROXY_TCP_PORT" haproxy
if (( ncpu > 1 )); then
    # The reference for Cutover's default (summarize.py pairs cutover-Nw with haproxy-Nt).
    start "haproxy-${ncpu}t" haproxy -db -f "$RUN/haproxy-${ncpu}t.cfg"
    add_target "haproxy-${ncpu}t" "$HAPROXYN_PORT" "$HAPROXYN_TCP_PORT" "haproxy-${ncpu}t"
fi
start haproxy-fwd haproxy -db -f "$RUN/haproxy-fwd.cfg"
add_target haproxy-fwd "$HAPROXYF_PORT" "" haproxy-fwd
start nginx nginx -p "$RUN" -e "$RUN/nginx-proxy.error.log" -c "$RUN/proxy.nginx.conf" -g 'daemon off;'
add_target nginx "$NGINX_PORT" "$( (( stream )) && echo "$NGINX_TCP_PORT" || true)" nginx

# Every target must serve both bodies from blue, over each of its listeners.
for t in "${targets[@]}"; do
    for port in ${HTTP[$t]} ${TCP[$t]}; do
        [[ -n ${PROC[$t]} ]] && wait_http "${PROC[$t]}" "$port"
        headers=$(curl -s -D - -o "$RUN/check.small" --max-time 5 "http://127.0.0.1:$port/") || die "$t :$port GET / failed"
        grep -qi '^x-backend: blue' <<< "$headers" || die "$t :$port did not answer from blue"
        [[ $(stat -c %s "$RUN/check.small") == 100 ]] || die "$t :$port GET / body is not 100 bytes"
        curl -s -o "$RUN/check.big" --max-time 10 "http://127.0.0.1:$port/big" || die "$t :$port GET /big failed"
        cmp -s "$RUN/check.big" "$WWW/big.bin" || die "$t :$port GET /big differs from the file"
    done
done
rm -f "$RUN/check.small" "$RUN/check.big"
log "targets: ${targets[*]} (checked: / and /big from blue on every listener)"

cat > "$out/meta.json" << EOF
{
  "date": "$(date -Is)",
  "nproc": $ncpu,
  "cpu_model": "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')",
  "kernel": "$(uname -r)",
  "versions": "$(haproxy -v | head -1 | cut -d' ' -f1-3), $(nginx -v 2>&1 | cut -d' ' -f3), wrk $(wrk -v 2>&1 | head -1 | cut -d' ' -f2), cutover $(git -C "$ROOT" rev-parse --short HEAD 2> /dev/null || echo '?')",
  "reps": $reps, "duration": $duration, "threads": $threads, "warmup": $warmup,
  "max_busy": $max_busy, "max_wait": $max_wait, "idle_count": $idle_count,
  "targets": "${targets[*]}",
  "ports": {"blue": $BLUE_PORT, "green": $GREEN_PORT, "cutover-1w": [$CUTOVER1_PORT, $CUTOVER1_TCP_PORT],
            "cutover-default": [$CUTOVER_PORT, $CUTOVER_TCP_PORT], "haproxy": [$HAPROXY_PORT, $HAPROXY_TCP_PORT],
            "haproxy-default": [$HAPROXYN_PORT, $HAPROXYN_TCP_PORT], "haproxy-fwd": [$HAPROXYF_PORT, $HAPROXYF_TCP_PORT],
            "nginx": [$NGINX_PORT, $( (( stream )) && echo "$NGINX_TCP_PORT" || echo null)]}
}
EOF

# --- throughput ------------------------------------------------------------------------------------
# NAME PATH CONNECTIONS LISTENER
loads=("small-c50 / 50 http" "small-c200 / 200 http" "big-c10 /big 10 http" "tcp-big-c10 /big 10 tcp")

proxy_pids() { [[ -n ${PROC[$1]} ]] && echo "${PID[${PROC[$1]}]}" || true; }

if (( warmup > 0 )); then
    log "warm-up: ${warmup}s per target and listener"
    for t in "${targets[@]}"; do
        wrk -t1 -c50 -d"${warmup}s" "http://127.0.0.1:${HTTP[$t]}/" > /dev/null
        [[ -z ${TCP[$t]} ]] || wrk -t1 -c10 -d"${warmup}s" "http://127.0.0.1:${TCP[$t]}/big" > /dev/null
    done
fi

runs=0
for t in "${targets[@]}"; do for l in "${loads[@]}"; do
    [[ ${l##* } == tcp && -z ${TCP[$t]} ]] || runs=$((runs + 1))
done; done
log "$reps reps x $((runs)) runs of ${duration}s (interleaved), waiting for busy CPU <= ${max_busy}% before each"
for (( rep = 1; rep <= reps; rep++ )); do
    # Each rep starts one target later (A B C D, then B C D A, ...), so that no target always runs
    # first after a pause, or right after the same neighbour.
    shift_by=$(( (rep - 1) % ${#targets[@]} ))
    order=("${targets[@]:shift_by}" "${targets[@]:0:shift_by}")
    for l in "${loads[@]}"; do
        read -r lname lpath lconns llistener <<< "$l"
        for t in "${order[@]}"; do
            if [[ $llistener == tcp ]]; then port=${TCP[$t]}; else port=${HTTP[$t]}; fi
            [[ -n $port ]] || continue
            "$PY" "$HERE/measure.py" run --target "$t" --load "$lname" --rep "$rep" \
                --url "http://127.0.0.1:$port$lpath" --conns "$lconns" --duration "$duration" \
                --threads "$threads" --proxy-pids "$(proxy_pids "$t")" --backend-pids "${PID[backends]}" \
                --max-busy "$max_busy" --max-wait "$max_wait" \
                --raw "$out/raw/$lname-$t-rep$rep.txt" --out "$out/runs.jsonl" \
                || log "wrk failed: $out/raw/$lname-$t-rep$rep.txt"
            sleep "$pause"
        done
    done
done

# --- memory with idle keep-alive connections -------------------------------------------------------
if (( idle_count > 0 )); then
    log "idle memory: $idle_count keep-alive connections through each proxy"
    for t in "${targets[@]}"; do
        [[ -n ${PROC[$t]} ]] || continue
        "$PY" "$HERE/measure.py" quiet --max-busy "$max_busy" --max-wait "$max_wait" > /dev/null
        "$PY" "$HERE/idle_conns.py" --target "$t" --port "${HTTP[$t]}" --pids "$(proxy_pids "$t")" \
            --count "$idle_count" --out "$out/idle.jsonl" || log "idle test failed for $t"
    done
fi

# Every proxy must still be alive: a crash during the run would make its numbers meaningless.
for name in "${started[@]}"; do
    kill -0 "${PID[$name]}" 2> /dev/null || log "warning: $name (pid ${PID[$name]}) died during the run; see $RUN/$name.log"
done

echo
"$PY" "$HERE/summarize.py" "$out"
echo
log "results in $out (summary.md, summary.json, runs.jsonl, idle.jsonl, raw/, run/)"
