#!/usr/bin/env python3
"""One wrk run with CPU and memory accounting, for Deploy/bench/bench.sh.

  measure.py quiet --max-busy PCT --max-wait S
      Wait until the machine's busy CPU over one second is <= PCT (100 = one core), at most S
      seconds. Prints the last busy figure and the seconds waited.

  measure.py run --target NAME --load NAME --rep N --url URL --conns C --duration S
                 --threads T --proxy-pids P[,P] --backend-pids P[,P] --raw FILE --out FILE.jsonl
                 [--max-busy PCT --max-wait S]
      Waits for a quiet machine, runs `wrk --latency`, and appends one JSON line to --out with
      wrk's figures and the CPU (100 = one core) used during the run by the proxy, the backend,
      wrk itself and everything else on the machine, plus the proxy's peak RSS. Process groups
      are given as root pids; their descendants (nginx workers) are counted with them.
"""
import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def machine_ticks():
    """(busy, total) jiffies summed over all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user/nice
    return total - idle, total


def wait_quiet(max_busy, max_wait):
    """Returns (busy % of one core in the last second, seconds waited)."""
    started = time.monotonic()
    while True:
        b0, _ = machine_ticks()
        time.sleep(1.0)
        b1, _ = machine_ticks()
        busy = (b1 - b0) * 100.0 / CLOCK_TICKS
        waited = time.monotonic() - started
        if busy <= max_busy or waited >= max_wait:
            return busy, waited


def children_map():
    kids = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def process_tree(roots, kids):
    """The root pids and all their descendants."""
    seen, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(kids.get(pid, []))
    return seen


def cpu_ticks(pids):
    """utime + stime of every live process in pids (threads included)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return total


def rss_kib(pids):
    """Sum of VmRSS over pids, in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}
UNIT_MIB = {"B": 1 / 1048576, "KB": 1 / 1024, "MB": 1.0, "GB": 1024.0, "TB": 1048576.0}


def parse_wrk(text):
    """Figures from wrk --latency output. wrk's KB/MB are binary (KiB/MiB)."""
    out = {"rps": 0.0, "mib_s": 0.0, "p50_ms": None, "p99_ms": None, "avg_ms": None,
           "requests": 0, "socket_errors": 0, "non_2xx": 0}
    m = re.search(r"Requests/sec:\s*([\d.]+)", text)
    if m:
        out["rps"] = float(m.group(1))
    m = re.search(r"Transfer/sec:\s*([\d.]+)([KMGT]?B)", text)
    if m:
        out["mib_s"] = float(m.group(1)) * UNIT_MIB[m.group(2)]
    m = re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s|m|h)", text, re.M)
    if m:
        out["avg_ms"] = float(m.group(1)) * UNIT_MS[m.group(2)]
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m|h)", text, re.M)
        if m:
            out[key] = float(m.group(1)) * UNIT_MS[m.group(2)]
    m = re.search(r"(\d+) requests in", text)
    if m:
        out["requests"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        out["socket_errors"] = sum(int(x) for x in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        out["non_2xx"] = int(m.group(1))
    return out


def pid_list(text):
    return [int(p) for p in text.split(",") if p.strip()]


def run(args):
    busy_before, waited = wait_quiet(args.max_busy, args.max_wait)
    kids = children_map()
    proxy = process_tree(pid_list(args.proxy_pids), kids)
    backend = process_tree(pid_list(args.backend_pids), kids)

    cmd = ["wrk", f"-t{args.threads}", f"-c{args.conns}", f"-d{args.duration}s", "--latency",
           "--timeout", "5s", args.url]
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    m0, p0, b0 = machine_ticks()[0], cpu_ticks(proxy), cpu_ticks(backend)
    t0 = time.monotonic()
    with open(args.raw, "w") as raw:
        raw.write(" ".join(cmd) + "\n")
        raw.flush()
        wrk = subprocess.Popen(cmd, stdout=raw, stderr=subprocess.STDOUT)
        rss_peak, status, usage = 0, None, None
        while status is None:
            time.sleep(0.5)
            rss_peak = max(rss_peak, rss_kib(proxy))
            pid, st, ru = os.wait4(wrk.pid, os.WNOHANG)
            if pid:
                status, usage = st, ru
        wrk.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - t0
    m1, p1, b1 = machine_ticks()[0], cpu_ticks(proxy), cpu_ticks(backend)
    self_after = resource.getrusage(resource.RUSAGE_SELF)

    def pct(ticks):
        return ticks * 100.0 / CLOCK_TICKS / elapsed

    wrk_cpu = (usage.ru_utime + usage.ru_stime) * 100.0 / elapsed
    self_cpu = ((self_after.ru_utime + self_after.ru_stime)
                - (self_before.ru_utime + self_before.ru_stime)) * 100.0 / elapsed
    machine = pct(m1 - m0)
    proxy_cpu, backend_cpu = pct(p1 - p0), pct(b1 - b0)
    with open(args.raw) as f:
        figures = parse_wrk(f.read())
    record = {
        "target": args.target, "load": args.load, "rep": args.rep, "conns": args.conns,
        "url": args.url, "duration_s": round(elapsed, 2), "wrk_exit": wrk.returncode,
        **figures,
        "errors": figures["socket_errors"] + figures["non_2xx"],
        "proxy_cpu": round(proxy_cpu, 1), "proxy_rss_mib": round(rss_peak / 1024, 1),
        "backend_cpu": round(backend_cpu, 1), "wrk_cpu": round(wrk_cpu, 1),
        "other_cpu": round(max(0.0, machine - proxy_cpu - backend_cpu - wrk_cpu - self_cpu), 1),
        "machine_cpu": round(machine, 1),
        "busy_before": round(busy_before, 1), "waited_s": round(waited, 1),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"{args.target:<12} {args.load:<11} rep {args.rep}: {figures['rps']:>9.0f} req/s "
          f"{figures['mib_s']:>7.1f} MiB/s p99 {figures['p99_ms'] or 0:>6.2f} ms "
          f"err {record['errors']} cpu {proxy_cpu:>4.0f}% rss {record['proxy_rss_mib']} MiB "
          f"other {record['other_cpu']}% (busy before {busy_before:.0f}%, waited {waited:.0f}s)",
          flush=True)
    return 0 if wrk.returncode == 0 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quiet")
    r = sub.add_parser("run")
    for p in (q, r):
        p.add_argument("--max-busy", type=float, default=30.0)
        p.add_argument("--max-wait", type=float, default=60.0)
    r.add_argument("--target", required=True)
    r.add_argument("--load", required=True)
    r.add_argument("--rep", type=int, required=True)
    r.add_argument("--url", required=True)
    r.add_argument("--conns", type=int, required=True)
    r.add_argument("--duration", type=int, required=True)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--proxy-pids", required=True)
    r.add_argument("--backend-pids", required=True)
    r.add_argument("--raw", required=True)
    r.add_argument("--out", required=True)
    args = ap.parse_args()
    if args.cmd == "quiet":
        busy, waited = wait_quiet(args.max_busy, args.max_wait)
        print(f"busy {busy:.0f}% after {waited:.0f}s")
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
