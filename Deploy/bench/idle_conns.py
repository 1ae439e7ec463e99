#!/usr/bin/env python3
"""Memory held by a proxy for idle keep-alive client connections, for Deploy/bench/bench.sh.

  idle_conns.py --target NAME --port PORT --pids P[,P] [--count 10000] [--batch 250] --out FILE.jsonl

Opens --count connections to 127.0.0.1:PORT in batches, sends one `GET /` on each and reads the
whole response, so every connection has been through the proxy once and sits idle with keep-alive.
With all of them held open it samples the RSS of the proxy's processes (the pids and their
descendants), then closes them and appends one JSON line to --out: RSS before, while held, and
after closing, the growth per connection, and how many connections failed or were closed by the
proxy. Batches keep the number of requests in flight (and so upstream connections) small.
"""
import argparse
import errno
import json
import resource
import selectors
import socket
import sys
import time

from measure import children_map, process_tree, rss_kib

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: cutover-bench-idle\r\n\r\n"


def response_complete(buf):
    """True once buf holds a whole response head and its Content-Length body."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return False
    length = 0
    for line in buf[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return len(buf) >= end + 4 + length


def run_batch(port, n, timeout_s):
    """Opens n connections, one request each; returns (open sockets, failures)."""
    sel = selectors.DefaultSelector()
    pending = {}
    failed = 0
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        if err not in (0, errno.EINPROGRESS):
            s.close()
            failed += 1
            continue
        pending[s] = {"sent": False, "buf": b""}
        sel.register(s, selectors.EVENT_WRITE)
    done = []
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            st = pending[s]
            try:
                if not st["sent"]:
                    if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        raise OSError("connect failed")
                    s.sendall(REQUEST)
                    st["sent"] = True
                    sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
                if not chunk:
                    raise OSError("closed before response")
                st["buf"] += chunk
                if response_complete(st["buf"]):
                    status = st["buf"].split(b" ", 2)[1]
                    sel.unregister(s)
                    del pending[s]
                    if status == b"200":
                        done.append(s)
                    else:
                        s.close()
                        failed += 1
            except OSError:
                sel.unregister(s)
                del pending[s]
                s.close()
                failed += 1
    for s in pending:
        s.close()
    failed += len(pending)
    sel.close()
    return done, failed


def still_open(socks):
    """Connections the proxy has not closed (not readable: no EOF, no stray bytes)."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    readable = len(sel.select(timeout=0))
    sel.close()
    return len(socks) - readable


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pids", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--settle", type=float, default=2.0, help="seconds to wait before sampling RSS")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.count + 100
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
        soft = min(want, hard)
    count = min(args.count, soft - 100)
    if count < args.count:
        print(f"fd limit {soft} (hard {hard}): opening {count} connections, not {args.count}",
              file=sys.stderr)

    roots = [int(p) for p in args.pids.split(",") if p]
    pids = process_tree(roots, children_map())
    rss_before = rss_kib(pids)

    held, failed = [], 0
    started = time.monotonic()
    while len(held) + failed < count:
        n = min(args.batch, count - len(held) - failed)
        ok, bad = run_batch(args.port, n, timeout_s=15.0)
        held += ok
        failed += bad
        if bad and not ok:
            break  # the proxy refuses new connections: stop rather than spin
    open_s = time.monotonic() - started
    time.sleep(args.settle)
    pids = process_tree(roots, children_map())
    rss_held = 0
    for _ in range(3):  # a few samples: the largest is the figure
        rss_held = max(rss_held, rss_kib(pids))
        time.sleep(0.2)
    alive = still_open(held)
    for s in held:
        s.close()
    time.sleep(args.settle)
    rss_after = rss_kib(process_tree(roots, children_map()))

    record = {
        "target": args.target, "port": args.port, "requested": args.count, "opened": len(held),
        "failed": failed, "still_open": alive, "open_s": round(open_s, 1),
        "rss_before_mib": round(rss_before / 1024, 1), "rss_held_mib": round(rss_held / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "kib_per_conn": round((rss_held - rss_before) / max(1, len(held)), 2),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{args.target:<12} idle {len(held)}/{args.count} held ({failed} failed, {alive} still open): "
          f"RSS {record['rss_before_mib']} -> {record['rss_held_mib']} MiB "
          f"({record['kib_per_conn']} KiB/conn), after close {record['rss_after_mib']} MiB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
