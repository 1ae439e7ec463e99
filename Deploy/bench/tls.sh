#!/usr/bin/env bash
# HTTPS: Cutover next to HAProxy with the same certificate (ECDSA P-256) and the same thread
# budget (one worker queue / nbthread 1), in front of one nginx backend, in interleaved wrk runs:
# keep-alive requests per second over TLS, and new handshakes per second (Connection: close, so
# every request is a fresh TCP connection and a full TLS handshake; wrk does not resume sessions).
#
#   Deploy/bench/tls.sh [--reps N] [--duration S] [--skip-build]
#
# Ports (127.0.0.1, all must be free): BENCH_TLS_PORT_BASE (default 18500) +1 backend, +11 Cutover,
# +31 HAProxy. Needs nginx, haproxy, wrk, openssl, curl. Everything is stopped by pid on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
reps=3 duration=10 build=1
while (($#)); do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --skip-build) build=0; shift ;;
        *) echo "tls.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
base="${BENCH_TLS_PORT_BASE:-18500}"
backend=$((base + 1)) cutover=$((base + 11)) haproxy=$((base + 31))
((build)) && swift build -c release >/dev/null
work="$(mktemp -d /tmp/cutover-tls-bench.XXXXXX)"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -keyout "$work/site.key" \
    -out "$work/site.pem" -subj /CN=localhost -addext subjectAltName=DNS:localhost 2>/dev/null
cat "$work/site.pem" "$work/site.key" > "$work/combined.pem"
mkdir -p "$work/tmp"
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/nginx.log warn;
events { worker_connections 16384; }
http { access_log off; keepalive_requests 1000000; client_body_temp_path $work/tmp/b; proxy_temp_path $work/tmp/p;
  fastcgi_temp_path $work/tmp/f; uwsgi_temp_path $work/tmp/u; scgi_temp_path $work/tmp/s;
  server { listen 127.0.0.1:$backend backlog=4096; location = / { return 200 "backend=blue;  this is the ~100-byte response body used by the reverse proxy benchmark (padding.....)\n"; } } }
CONF
cat > "$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    maxconn 8000
frontend fe
    bind 127.0.0.1:$haproxy ssl crt $work/combined.pem alpn http/1.1 ssl-min-ver TLSv1.2
    default_backend be
backend be
    http-reuse safe
    server blue 127.0.0.1:$backend
CONF
cat > "$work/cutover.json" <<CONF
{ "listeners": [{ "name": "web", "address": "127.0.0.1:$cutover", "profile": "web",
                  "tls": { "certificates": [{ "cert": "site.pem", "key": "site.key" }] } }],
  "profiles": [{ "name": "web", "endpoints": [{ "name": "blue", "address": "127.0.0.1:$backend" }] }],
  "access_log": "off", "workers": 1 }
CONF
nginx -c "$work/nginx.conf" & pids+=($!)
haproxy -db -f "$work/haproxy.cfg" & pids+=($!)
.build/release/cutover proxy --config "$work/cutover.json" 2>"$work/cutover.log" & pids+=($!)
for port in "$backend" "$haproxy" "$cutover"; do
    for _ in $(seq 1 100); do curl -skf "http$([[ $port == "$backend" ]] || echo s)://localhost:$port/" >/dev/null && break; sleep 0.1; done
done

rate() { wrk -t1 -c"$2" -d"${duration}s" "${@:3}" "https://localhost:$1/" | awk '/Requests\/sec/ {print $2}'; }
declare -A keepalive handshakes
for rep in $(seq 1 "$reps"); do
    for name in haproxy cutover; do
        port=${!name}
        keepalive[$name]+="$(rate "$port" 50) "
        handshakes[$name]+="$(rate "$port" 20 -H "Connection: close") "
    done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '| load | HAProxy req/s | Cutover req/s | Cutover/HAProxy |\n|---|---|---|---|\n'
for load in keepalive handshakes; do
    declare -n figures=$load
    h=$(median <<<"${figures[haproxy]}") c=$(median <<<"${figures[cutover]}")
    printf '| %s (medians of %s) | %s | %s | %.2f |\n' "$load" "$reps" "$h" "$c" "$(echo "$c / $h" | bc -l)"
done
