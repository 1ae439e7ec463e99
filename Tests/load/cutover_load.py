#!/usr/bin/env python3
"""Load checks of issue 20 against the real `cutover` binary, on 127.0.0.1 only.

Each check starts its own `cutover backend` and `cutover proxy` in a temporary directory, drives
them with raw sockets from this process, prints its figures, and removes everything it started,
also when interrupted or when its time bound (--max-seconds) passes. The last line printed is
`RESULT {json}` (snake_case keys) for LoadTests.swift; the exit status is 0 when every invariant
held, 1 when one did not (each failed one is printed as `FAIL ...`), 2 when the setup failed.

  connections-over-cap   N silent connections against max_connections CAP, a normal client
                         meanwhile: evicted/refused from /metrics, the client's success and p99
  churn                  N connect-request-close cycles: the proxy's descriptors (/proc/PID/fd)
                         and resident memory (/proc/PID/status) before, after, and after a settle
  slow-readers           C clients ask for SIZE bytes and never read: the proxy's resident memory
                         sampled (its maximum bounded), a normal client served meanwhile

Only the Python standard library is used. Which binary: --binary, else $CUTOVER_BIN, else
.build/release/cutover when it exists, else .build/debug/cutover.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class SetupError(Exception):
    """The rig could not be started (no binary, no port in the log, too few descriptors)."""


class OutOfTime(Exception):
    """The check's --max-seconds passed."""


def find_binary(given):
    if given:
        return given
    if os.environ.get("CUTOVER_BIN"):
        return os.environ["CUTOVER_BIN"]
    release = os.path.join(ROOT, ".build/release/cutover")
    return release if os.access(release, os.X_OK) else os.path.join(ROOT, ".build/debug/cutover")


def raise_descriptor_limit(needed):
    """Raises this process's soft RLIMIT_NOFILE (inherited by the proxy it starts) to `needed`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise SetupError(f"needs {needed} open files (ulimit -n), the hard limit is {hard}; "
                         f"raise it (e.g. `ulimit -Hn {needed}` as root, or LimitNOFILE=) or lower the counts")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return needed


def wait_for(condition, timeout, step=0.02):
    """Polls `condition` until it returns something true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


class Rig:
    """`cutover backend` (blue) and `cutover proxy` in front of it, in a temporary directory."""

    def __init__(self, binary, settings):
        if not os.access(binary, os.X_OK):
            raise SetupError(f"no cutover binary at {binary} (swift build, or --binary PATH)")
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="cutover-load-")
        self.children = []
        try:
            self._start(settings)
        except BaseException:
            self.stop()
            raise

    def _spawn(self, label, arguments):
        out = open(os.path.join(self.dir, label + ".out"), "wb")
        err = open(os.path.join(self.dir, label + ".err"), "wb")
        child = subprocess.Popen([self.binary] + arguments, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        out.close()
        err.close()
        self.children.append(child)
        return child

    def _log(self, label, suffix):
        with open(os.path.join(self.dir, label + suffix), errors="replace") as file:
            return file.read()

    def _start(self, settings):
        self._spawn("backend", ["backend", "--listen", "127.0.0.1:0", "--name", "blue"])
        line = wait_for(lambda: next((l for l in self._log("backend", ".out").splitlines() if l.startswith("listening on ")), None), 15)
        if not line:
            raise SetupError("the backend did not start: " + self._log("backend", ".err")[-500:])
        backend = line.split()[-1]
        config = {
            "listeners": [{"name": "web", "address": "127.0.0.1:0", "profile": "web"}],
            # A slow TCP probe keeps probing out of what is measured.
            "profiles": [{"name": "web", "probe": {"type": "tcp", "interval": "30s"},
                          "endpoints": [{"name": "blue", "address": backend}]}],
            "admin": {"socket": os.path.join(self.dir, "admin.sock"), "http": "127.0.0.1:0"},
            "access_log": "off",
        }
        config.update(settings)
        path = os.path.join(self.dir, "cutover.json")
        with open(path, "w") as file:
            json.dump(config, file)
        self.proxy = self._spawn("proxy", ["proxy", "--config", path])

        def ports():
            log = self._log("proxy", ".err")
            listener = admin = None
            for l in log.splitlines():
                if " listening on " in l and "listener web" in l:
                    listener = int(l.split("listening on ")[1].split()[0].rsplit(":", 1)[1])
                if "admin http on http://" in l:
                    admin = int(l.split("admin http on http://")[1].split("/")[0].rsplit(":", 1)[1])
            return (listener, admin) if listener and admin else None

        found = wait_for(ports, 15)
        if not found:
            raise SetupError("the proxy did not start: " + self._log("proxy", ".err")[-1000:])
        self.port, self.admin_port = found
        self.pid = self.proxy.pid

    def metrics(self):
        """`/metrics` as {sample: value}, a sample being `name` or `name{labels}`."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                sample, value = line.rsplit(" ", 1)
                values[sample] = float(value)
        return values

    def metric(self, name, labels="", metrics=None):
        """The sum of `name`'s samples whose labels contain `labels` (e.g. `class="2xx"`)."""
        metrics = metrics if metrics is not None else self.metrics()
        return int(sum(v for k, v in metrics.items() if k.split("{")[0] == name and labels in k))

    def descriptors(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def status(self, field):
        """A `/proc/PID/status` figure in its unit (kB for memory)."""
        with open(f"/proc/{self.pid}/status") as file:
            for line in file:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return -1

    def wait_until_no_connections(self, timeout=30):
        return wait_for(lambda: self.metric("cutover_connections_open") == 0, timeout, step=0.1)

    def stop(self):
        for child in self.children:
            if child.poll() is None:
                child.terminate()
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.children = []
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(port, path, close=True, timeout=5.0):
    """One GET on a new connection; returns the status (0 when no whole answer came)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
        return exchange(connection, path, close)


def exchange(connection, path, close):
    """Sends a GET and reads one whole Content-Length answer; its status, 0 if it broke."""
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: load\r\n{'Connection: close' + chr(13) + chr(10) if close else ''}\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return 0
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next((int(l.split(":", 1)[1]) for l in lines[1:] if l.lower().startswith("content-length:")), 0)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return 0
        body += chunk
    return status


class NormalClient:
    """A well-behaved client beside the load: one GET / on a new connection every `interval` s."""

    def __init__(self, port, interval):
        self.port, self.interval = port, interval
        self.latencies, self.failures = [], []
        self.timeline = []  # (start, latency) of each 200, for the figures of one phase
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                status = http_get(self.port, "/")
            except OSError as error:
                status = f"{type(error).__name__}: {error}"
            elapsed = time.monotonic() - started
            if status == 200:
                self.latencies.append(elapsed)
                self.timeline.append((started, elapsed))
            else:
                self.failures.append(status)
            self.stopping.wait(self.interval)

    def p99_ms(self, since):
        """The p99 latency of the requests started after `since` (a monotonic time)."""
        ordered = sorted(latency for started, latency in self.timeline if started >= since)
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 1) if ordered else None

    def stop(self):
        self.stopping.set()
        self.thread.join()
        total = len(self.latencies) + len(self.failures)
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else None
        return {
            "normal_requests": total,
            "normal_ok": len(self.latencies),
            "normal_success_ratio": round(len(self.latencies) / total, 4) if total else 0.0,
            "normal_p99_ms": round(p99 * 1000, 1) if p99 is not None else None,
            "normal_failures": [str(f) for f in self.failures[:5]],
        }


def connections_over_cap(args, checks):
    # Descriptors: ours (the silent sockets, the normal client, slack) and the proxy's (capped
    # client connections, upstream ones, listeners, logs); both processes inherit this limit.
    raise_descriptor_limit(max(args.connections, args.cap) + 512)
    rig = Rig(args.binary, {
        "limits": {"max_connections": args.cap},
        # Silent sockets must stay until the proxy chooses to evict them, not time out.
        "timeouts": {"header_read": "300s", "idle": "300s"},
    })
    sockets = []
    try:
        normal = NormalClient(rig.port, args.interval)
        started = time.monotonic()
        connect_errors = 0
        for _ in range(args.connections):
            try:
                sockets.append(socket.create_connection(("127.0.0.1", rig.port), timeout=10))
            except OSError:
                connect_errors += 1
        opened = time.monotonic()
        time.sleep(args.hold)  # the load itself: the normal client keeps asking meanwhile
        open_at_peak = rig.metric("cutover_connections_open")
        fds_at_peak = rig.descriptors()
        closed_by_proxy = sum(1 for s in sockets if peer_closed(s))
        figures = normal.stop()
        figures["normal_p99_ms_while_over_cap"] = normal.p99_ms(since=opened)
        metrics = rig.metrics()
        figures.update({
            "connections": args.connections, "max_connections": args.cap,
            "connect_errors": connect_errors, "opened_in_s": round(opened - started, 2),
            "open_at_peak": open_at_peak, "proxy_fds_at_peak": fds_at_peak, "closed_by_proxy": closed_by_proxy,
            "accepted": rig.metric("cutover_connections_accepted_total", metrics=metrics),
            "served": rig.metric("cutover_requests_total", 'class="2xx"', metrics=metrics),
            "evicted": rig.metric("cutover_connections_evicted_total", metrics=metrics),
            "refused": rig.metric("cutover_connections_refused_total", metrics=metrics),
        })
        for s in sockets:
            s.close()
        sockets = []
        figures["drained"] = bool(rig.wait_until_no_connections())
        checks.require_normal_client_served(figures)
        # A newcomer is counted before the idle one it evicts is closed, on each worker at once.
        checks.require(open_at_peak <= args.cap + 4, f"{open_at_peak} connections open over max_connections {args.cap}")
        checks.require(figures["evicted"] + figures["refused"] >= args.connections - args.cap,
                       f"only {figures['evicted']} evicted + {figures['refused']} refused of {args.connections - args.cap} over the cap")
        checks.require(figures["drained"], "connections still open after every client closed")
        return figures
    finally:
        for s in sockets:
            s.close()
        rig.stop()


def peer_closed(connection):
    # Non-blocking: with a timeout set, Python would wait that long for each quiet socket.
    connection.setblocking(False)
    try:
        return connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def churn(args, checks):
    raise_descriptor_limit(4096)
    rig = Rig(args.binary, {})
    try:
        cold = {"fds": rig.descriptors(), "rss_kib": rig.status("VmRSS")}
        # A warm-up first: the first requests fill the upstream pool and the allocator's caches,
        # which is a start-up cost, not a leak.
        run_churns(rig.port, args.warmup, args.threads)
        time.sleep(1)
        start = {"fds": rig.descriptors(), "rss_kib": rig.status("VmRSS")}
        began = time.monotonic()
        ok, failed = run_churns(rig.port, args.churns, args.threads)
        seconds = time.monotonic() - began
        after = {"fds": rig.descriptors(), "rss_kib": rig.status("VmRSS")}
        time.sleep(args.settle)  # the settle the check is about
        settled = {"fds": rig.descriptors(), "rss_kib": rig.status("VmRSS"), "connections_open": rig.metric("cutover_connections_open")}
        figures = {
            "churns": args.churns, "threads": args.threads, "ok": ok, "not_ok": failed, "seconds": round(seconds, 1),
            "per_second": round(args.churns / seconds) if seconds else None,
            "cold": cold, "start": start, "after": after, "settled": settled,
            "fd_tolerance": args.fd_tolerance, "rss_tolerance_kib": args.rss_tolerance_mib * 1024,
            "peak_rss_kib": rig.status("VmHWM"),
        }
        checks.require(failed == 0, f"{failed} of {args.churns} churns got no 200")
        checks.require(settled["connections_open"] == 0, f"{settled['connections_open']} connections open after the settle")
        checks.require(settled["fds"] <= start["fds"] + args.fd_tolerance,
                       f"descriptors {start['fds']} → {settled['fds']} after the settle (tolerance {args.fd_tolerance})")
        checks.require(settled["rss_kib"] <= start["rss_kib"] + args.rss_tolerance_mib * 1024,
                       f"resident memory {start['rss_kib']} → {settled['rss_kib']} KiB after the settle (tolerance {args.rss_tolerance_mib} MiB)")
        return figures
    finally:
        rig.stop()


def run_churns(port, count, threads):
    """`count` connect-request-close cycles over `threads` threads; half of them ask
    `Connection: close` (the proxy closes first), half close after the answer (the client does)."""
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    share = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]

    def worker(n):
        ok = 0
        for i in range(n):
            try:
                ok += http_get(port, "/", close=i % 2 == 0) == 200
            except OSError:
                pass  # counted below as not ok
        with lock:
            counts["ok"] += ok
            counts["failed"] += n - ok

    pool = [threading.Thread(target=worker, args=(n,)) for n in share]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return counts["ok"], counts["failed"]


def slow_readers(args, checks):
    raise_descriptor_limit(args.clients * 4 + 512)
    # `write` longer than the hold: the stalled clients stay for the whole measurement.
    rig = Rig(args.binary, {"timeouts": {"write": "300s", "upstream_response": "300s"}})
    readers = []
    try:
        baseline = rig.status("VmRSS")
        size = args.size_mib << 20
        for _ in range(args.clients):
            reader = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # A small receive window, as a phone on a bad link: the proxy's writes stall at once.
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            reader.settimeout(10)
            reader.connect(("127.0.0.1", rig.port))
            reader.sendall(f"GET /bytes?n={size} HTTP/1.1\r\nHost: load\r\n\r\n".encode())
            readers.append(reader)
        normal = NormalClient(rig.port, args.interval)
        samples = []
        deadline = time.monotonic() + args.hold
        while time.monotonic() < deadline:
            samples.append(rig.status("VmRSS"))
            time.sleep(0.1)  # the sampling period
        during = rig.metrics()
        open_during = rig.metric("cutover_connections_open", metrics=during)
        figures = normal.stop()
        for reader in readers:
            # A reset, as a client that gives up does; nothing it never read is left behind.
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            reader.close()
        readers = []
        figures.update({
            "clients": args.clients, "size_mib": args.size_mib, "hold_s": args.hold,
            "baseline_rss_kib": baseline, "max_rss_kib": max(samples), "samples": len(samples),
            "bound_kib": baseline + args.bound_mib * 1024, "open_during": open_during,
            "in_flight_during": rig.metric("cutover_endpoint_in_flight", metrics=during),
            # Backpressure: what the proxy took from the backend, against clients × size asked.
            "upstream_bytes_received": rig.metric("cutover_upstream_bytes_received_total", metrics=during),
            "drained": bool(rig.wait_until_no_connections()),
        })
        checks.require_normal_client_served(figures)
        checks.require(figures["in_flight_during"] >= args.clients, f"only {figures['in_flight_during']} requests in flight while {args.clients} slow readers waited")
        checks.require(open_during >= args.clients, f"only {open_during} connections open while {args.clients} slow readers waited")
        checks.require(figures["max_rss_kib"] <= figures["bound_kib"],
                       f"resident memory reached {figures['max_rss_kib']} KiB, over {baseline} + {args.bound_mib} MiB")
        checks.require(figures["drained"], "connections still open after the slow readers reset")
        return figures
    finally:
        for reader in readers:
            reader.close()
        rig.stop()


class Checks:
    def __init__(self):
        self.failed = []

    def require(self, condition, message, detail=None):
        if not condition:
            self.failed.append(message if detail is None else f"{message}: {detail}")

    def require_normal_client_served(self, figures):
        """The invariant every check shares: the normal client asked, and got a 200 every time."""
        self.require(figures["normal_requests"] > 0 and figures["normal_failures"] == [],
                     "the normal client got an answer other than 200", figures["normal_failures"])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", help="the cutover executable")
    parser.add_argument("--max-seconds", type=int, default=300, help="the whole check's time bound")
    commands = parser.add_subparsers(dest="check", required=True)
    over = commands.add_parser("connections-over-cap")
    over.add_argument("--connections", type=int, default=12000)
    over.add_argument("--cap", type=int, default=8000)
    over.add_argument("--hold", type=float, default=5.0, help="seconds the connections stay open")
    over.add_argument("--interval", type=float, default=0.02, help="the normal client's pause between requests")
    ch = commands.add_parser("churn")
    ch.add_argument("--churns", type=int, default=100_000)
    ch.add_argument("--warmup", type=int, default=1000)
    ch.add_argument("--threads", type=int, default=4)
    ch.add_argument("--settle", type=float, default=5.0)
    ch.add_argument("--fd-tolerance", type=int, default=8)
    ch.add_argument("--rss-tolerance-mib", type=int, default=8)
    slow = commands.add_parser("slow-readers")
    slow.add_argument("--clients", type=int, default=50)
    slow.add_argument("--size-mib", type=int, default=100)
    slow.add_argument("--hold", type=float, default=10.0)
    slow.add_argument("--bound-mib", type=int, default=64, help="allowed growth over the start")
    slow.add_argument("--interval", type=float, default=0.1)
    args = parser.parse_args()
    args.binary = find_binary(args.binary)

    def out_of_time(*_):
        raise OutOfTime(f"--max-seconds {args.max_seconds} passed")

    def interrupted(*_):
        raise KeyboardInterrupt()

    signal.signal(signal.SIGALRM, out_of_time)
    signal.signal(signal.SIGTERM, interrupted)
    signal.alarm(args.max_seconds)
    checks = Checks()
    run = {"connections-over-cap": connections_over_cap, "churn": churn, "slow-readers": slow_readers}[args.check]
    try:
        figures = run(args, checks)
    except SetupError as error:
        print(f"{args.check}: {error}", file=sys.stderr)
        return 2
    except OutOfTime as error:
        # Where it was stuck is the useful part.
        traceback.print_exc()
        print(f"{args.check}: {error}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
    figures["check"] = args.check
    figures["binary"] = args.binary
    for key, value in figures.items():
        print(f"{key}: {value}")
    for message in checks.failed:
        print("FAIL " + message)
    figures["failed"] = checks.failed
    print("RESULT " + json.dumps(figures))
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
