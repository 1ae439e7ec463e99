#!/usr/bin/env bash
# Renders the admin status page in headless Chromium and checks what it shows.
#
# Starts a demo-like setup (two `cutover backend`s, blue and green, behind `cutover proxy` with the
# admin HTTP listener on a free port), sends some traffic and switches to green so the page has
# counters and events, then:
#   - saves a 1200x800 screenshot of http://127.0.0.1:PORT/status to OUT (default .build/status-page.png)
#   - dumps the rendered DOM and checks it names the profile and both endpoints.
# Everything it started is stopped on exit, whatever happened.
#
# Usage: Tests/status-page-screenshot.sh [OUT.png]
#   CUTOVER=path/to/cutover   the binary to use (default .build/debug/cutover)
# Exit status: 0 checked, 1 a check failed, 77 chromium is not installed.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cutover=${CUTOVER:-$root/.build/debug/cutover}
out=${1:-$root/.build/status-page.png}
chromium=$(command -v chromium || true)
if [[ -z $chromium ]]; then
    echo "chromium is not installed (apt-get install -y chromium)" >&2
    exit 77
fi
[[ -x $cutover ]] || { echo "no cutover binary at $cutover (swift build first)" >&2; exit 1; }

work=$(mktemp -d /tmp/cutover-status-page.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

# Waits up to 10 s for a line matching $2 in file $1 and prints the last number after a colon.
wait_for_port() {
    local file=$1 pattern=$2
    for _ in $(seq 1 200); do
        if line=$(grep -m1 -E "$pattern" "$file" 2>/dev/null); then
            sed -E 's/.*:([0-9]+).*/\1/' <<<"$(grep -oE "$pattern" <<<"$line")"
            return 0
        fi
        sleep 0.05
    done
    fail "timed out waiting for '$pattern' in $file: $(cat "$file")"
}

"$cutover" backend --listen 127.0.0.1:0 --name blue >"$work/blue.log" 2>&1 &
pids+=($!)
"$cutover" backend --listen 127.0.0.1:0 --name green >"$work/green.log" 2>&1 &
pids+=($!)
blue_port=$(wait_for_port "$work/blue.log" 'listening on 127\.0\.0\.1:[0-9]+')
green_port=$(wait_for_port "$work/green.log" 'listening on 127\.0\.0\.1:[0-9]+')

cat >"$work/cutover.json" <<JSON
{
  "listeners": [{ "name": "demo", "address": "127.0.0.1:0", "mode": "http", "profile": "demo" }],
  "profiles": [{
    "name": "demo",
    "endpoints": [
      { "name": "blue", "address": "127.0.0.1:$blue_port", "state": "online" },
      { "name": "green", "address": "127.0.0.1:$green_port", "state": "offline" }
    ],
    "drain_timeout": "10s"
  }],
  "admin": { "socket": "$work/admin.sock", "http": "127.0.0.1:0" },
  "access_log": "off"
}
JSON
"$cutover" proxy --config "$work/cutover.json" >"$work/proxy.out" 2>"$work/proxy.log" &
pids+=($!)
proxy_port=$(wait_for_port "$work/proxy.log" 'listening on 127\.0\.0\.1:[0-9]+')
admin_port=$(wait_for_port "$work/proxy.log" 'admin http on http://127\.0\.0\.1:[0-9]+')

# Traffic and a switch, so the page has counters, a live endpoint and events to show.
for _ in 1 2 3 4 5; do curl -sf "http://127.0.0.1:$proxy_port/" >/dev/null || fail "request through the proxy failed"; done
"$cutover" ctl --socket "$work/admin.sock" switch demo green >/dev/null || fail "switch failed"
for _ in 1 2 3; do curl -sf "http://127.0.0.1:$proxy_port/" >/dev/null || fail "request after the switch failed"; done

url="http://127.0.0.1:$admin_port/status"
chrome=("$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$work/chromium")
mkdir -p "$(dirname "$out")"
rm -f "$out"
timeout 30 "${chrome[@]}" --screenshot="$out" --window-size=1200,800 "$url" >"$work/chromium-shot.log" 2>&1 \
    || fail "chromium --screenshot failed: $(tail -5 "$work/chromium-shot.log")"
[[ -s $out ]] || fail "no screenshot written to $out"
[[ $(head -c 4 "$out" | od -An -c | tr -d ' ') == '211PNG' ]] || fail "$out is not a PNG"

timeout 30 "${chrome[@]}" --dump-dom "$url" >"$work/dom.html" 2>"$work/chromium-dom.log" \
    || fail "chromium --dump-dom failed: $(tail -5 "$work/chromium-dom.log")"
for name in 'id="profile-demo"' '>blue<' '>green<' 'live: green' 'Recent events'; do
    grep -qF -- "$name" "$work/dom.html" || fail "the rendered status page lacks '$name'"
done

echo "status page OK: screenshot $out ($(wc -c <"$out") bytes); DOM names profile demo, endpoints blue and green"
