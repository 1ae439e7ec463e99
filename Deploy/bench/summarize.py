#!/usr/bin/env python3
"""Markdown summary of a Deploy/bench/bench.sh results directory.

  summarize.py DIR
  summarize.py DIR DIR...

Reads DIR/meta.json, DIR/runs.jsonl (one line per wrk run) and DIR/idle.jsonl (one line per
proxy), prints the tables and writes them to DIR/summary.md and the medians to DIR/summary.json.
Given several directories, it pools their reps (rep 3 of the second is "2.3") and only prints:
on a shared machine one run's medians of 5 reps still move by a tenth from run to run, and the
median of 10 or 15 paired reps says more than any one of them.
Figures are medians over repetitions, except errors, which are summed. Ratios compare every
Cutover target (name starting with "cutover") with the targets named "haproxy" and "nginx": each is
the median over reps of the ratio within one rep, where the targets ran back to back, so that the
machine's drift from one rep to the next (this guest's has halved a proxy's req/s within an hour)
cancels instead of landing on whichever target it hit. Reps where either run of a pair was
disturbed (the rest of the machine used more than NOISY_OTHER_CPU) are left out of that pair's
ratio, unless all of them were. A Cutover target with several workers ("cutover-2w") is also
compared with the HAProxy that has as many threads ("haproxy-2t"), and the one-worker target with
the one-thread HAProxy that adds the headers Cutover adds ("haproxy-fwd"), in tables of their own.
"""
import json
import os
import re
import statistics
import sys
from urllib.parse import urlparse

REFERENCES = ("haproxy", "nginx")
NOISY_OTHER_CPU = 30  # other CPU % (100 = one core) above which a run is listed as disturbed


def read_lines(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def ordered(items):
    """Unique values in first-seen order."""
    seen = []
    for item in items:
        if item not in seen:
            seen.append(item)
    return seen


def fmt(value, digits=0, thousands=True):
    if value is None:
        return "-"
    if thousands and digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def ratio(a, b):
    if a is None or not b:
        return "-"
    return f"{a / b:.2f}"


def cpu_per_request(run):
    """Proxy CPU per request in µs (CPU % of one core ÷ req/s), or None without a proxy or requests."""
    if run.get("proxy_cpu") is None or not run.get("rps"):
        return None
    return run["proxy_cpu"] / 100 / run["rps"] * 1e6


def quiet_pairs(runs, load, target, reference):
    """The (target's run, reference's run) of every rep, keeping only the reps where neither was
    disturbed (the rest of the machine under NOISY_OTHER_CPU) when there are any: a run another
    tenant slowed measures that tenant. Also returns how many reps there were."""
    by_rep = {}
    for r in runs:
        if r["load"] == load and r["target"] in (target, reference):
            by_rep.setdefault(r["rep"], {})[r["target"]] = r
    pairs = [(p[target], p[reference]) for p in by_rep.values() if target in p and reference in p]
    quiet = [(a, b) for a, b in pairs if max(a["other_cpu"], b["other_cpu"]) <= NOISY_OTHER_CPU]
    return (quiet or pairs), len(pairs)


def paired_ratio(pairs, figure):
    """Median over the pairs of figure(target's run) ÷ figure(reference's run)."""
    ratios = [figure(a) / figure(b) for a, b in pairs if figure(a) is not None and figure(b)]
    return statistics.median(ratios) if ratios else None


def medians(runs):
    """{(load, target): figures} with medians over reps."""
    out = {}
    for load in ordered(r["load"] for r in runs):
        for target in ordered(r["target"] for r in runs):
            reps = [r for r in runs if r["load"] == load and r["target"] == target]
            if not reps:
                continue

            def med(key):
                values = [r[key] for r in reps if r.get(key) is not None]
                return statistics.median(values) if values else None

            rps = [r["rps"] for r in reps]
            out[(load, target)] = {
                "load": load, "target": target, "reps": len(reps), "conns": reps[0]["conns"],
                "url": reps[0]["url"],
                "rps": med("rps"), "mib_s": med("mib_s"), "p50_ms": med("p50_ms"),
                "p99_ms": med("p99_ms"), "errors": sum(r["errors"] for r in reps),
                "proxy_cpu": med("proxy_cpu"), "proxy_rss_mib": med("proxy_rss_mib"),
                "backend_cpu": med("backend_cpu"), "wrk_cpu": med("wrk_cpu"),
                "other_cpu": med("other_cpu"), "other_cpu_max": max(r["other_cpu"] for r in reps),
                "cpu_us_per_req": statistics.median(c) if (c := [x for x in map(cpu_per_request, reps) if x is not None]) else None,
                "cv_pct": (statistics.stdev(rps) / statistics.mean(rps) * 100)
                if len(rps) > 1 and statistics.mean(rps) else None,
            }
    return out


def load_tables(table, runs):
    lines = []
    for load in ordered(k[0] for k in table):
        rows = {t: v for (l, t), v in table.items() if l == load}
        first = next(iter(rows.values()))
        lines.append(f"### {load}: `GET {urlparse(first['url']).path or '/'}`, {first['conns']} connections")
        lines.append("")
        lines.append("| target | req/s | MiB/s | p50 ms | p99 ms | errors | proxy CPU % | proxy RSS MiB "
                     "| backend CPU % | wrk CPU % | other CPU % | cv % | CPU µs/req "
                     "| req/s ×HAProxy | req/s ×nginx | p99 ×HAProxy | p99 ×nginx | CPU/req ×HAProxy "
                     "| reps paired with HAProxy |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        figures = (("rps", lambda r: r["rps"]), ("p99", lambda r: r["p99_ms"]))
        for target, v in rows.items():
            if target.startswith("cutover"):
                v["ratios"] = {}
                pairs = {name: quiet_pairs(runs, load, target, name) for name in REFERENCES}
                for key, figure in figures:
                    for name in REFERENCES:
                        v["ratios"][f"{key}_x_{name}"] = paired_ratio(pairs[name][0], figure)
                v["ratios"]["cpu_per_req_x_haproxy"] = paired_ratio(pairs["haproxy"][0], cpu_per_request)
                v["reps_paired_with_haproxy"] = len(pairs["haproxy"][0])
                cells = [fmt(x, 2) for x in v["ratios"].values()]
                cells.append(f"{v['reps_paired_with_haproxy']} / {pairs['haproxy'][1]}")
            else:
                cells = ["-"] * 6
            lines.append(
                f"| {target} | {fmt(v['rps'])} | {fmt(v['mib_s'], 1)} | {fmt(v['p50_ms'], 2)} "
                f"| {fmt(v['p99_ms'], 2)} | {v['errors']} | {fmt(v['proxy_cpu'])} "
                f"| {fmt(v['proxy_rss_mib'], 1)} | {fmt(v['backend_cpu'])} | {fmt(v['wrk_cpu'])} "
                f"| {fmt(v['other_cpu'])} | {fmt(v['cv_pct'], 1)} | {fmt(v['cpu_us_per_req'], 1)} | "
                + " | ".join(cells) + " |")
        noisy = [f"{r['target']} rep {r['rep']} ({r['other_cpu']:.0f} %)" for r in runs
                 if r["load"] == load and r["other_cpu"] > NOISY_OTHER_CPU]
        if noisy:
            lines.append("")
            lines.append(f"Runs where the rest of the machine used more than {NOISY_OTHER_CPU} % CPU: "
                         + ", ".join(noisy) + ".")
        lines.append("")
    return lines


def same_threads_reference(target, targets):
    """The HAProxy with as many threads as Cutover target `target` has workers ("cutover-2w" →
    "haproxy-2t"), when it ran, else None."""
    match = re.fullmatch(r"cutover-(\d+)w", target)
    reference = f"haproxy-{match.group(1)}t" if match else None
    return reference if reference in targets else None


def equal_work_reference(target, targets):
    """"haproxy-fwd" (one thread, adding Cutover's forwarding headers and request id) for the
    one-worker Cutover target, when it ran, else None."""
    return "haproxy-fwd" if target == "cutover-1w" and "haproxy-fwd" in targets else None


def peer_table(table, runs, title, reference_of):
    """Each Cutover target that `reference_of(target, targets)` gives a reference against it, paired
    as above; the ratios are also kept in the target's figures."""
    targets = ordered(r["target"] for r in runs)
    peers = [(t, ref) for t in targets if (ref := reference_of(t, targets))]
    if not peers:
        return []
    lines = [f"### {title}", "",
             "| load | target | reference | req/s × | p99 × | CPU/req × | reps paired |",
             "|---|---|---|---:|---:|---:|---:|"]
    for load in ordered(k[0] for k in table):
        for target, reference in peers:
            if (load, target) not in table or (load, reference) not in table:
                continue
            pairs, total = quiet_pairs(runs, load, target, reference)
            ratios = {"rps": paired_ratio(pairs, lambda r: r["rps"]), "p99": paired_ratio(pairs, lambda r: r["p99_ms"]),
                      "cpu_per_req": paired_ratio(pairs, cpu_per_request)}
            table[(load, target)].setdefault("ratios", {}).update({f"{k}_x_{reference}": v for k, v in ratios.items()})
            lines.append(f"| {load} | {target} | {reference} | " + " | ".join(fmt(v, 2) for v in ratios.values())
                         + f" | {len(pairs)} / {total} |")
    lines.append("")
    return lines


def peer_tables(table, runs):
    return (peer_table(table, runs, "Against HAProxy with as many threads as Cutover has workers", same_threads_reference)
            + peer_table(table, runs, "Against HAProxy doing the same header work", equal_work_reference))


def idle_table(idle):
    if not idle:
        return []
    by_target = {r["target"]: r for r in idle}
    lines = ["### Idle keep-alive connections", "",
             "| target | held / asked | failed | closed by proxy | RSS before MiB | RSS held MiB "
             "| KiB per connection | RSS held ×HAProxy | RSS held ×nginx |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for target, r in by_target.items():
        cells = []
        for name in REFERENCES:
            ref = by_target.get(name)
            cells.append(ratio(r["rss_held_mib"], ref["rss_held_mib"])
                         if ref and target.startswith("cutover") else "-")
        lines.append(f"| {target} | {r['opened']:,} / {r['requested']:,} | {r['failed']} "
                     f"| {r['opened'] - r['still_open']} | {r['rss_before_mib']} | {r['rss_held_mib']} "
                     f"| {r['kib_per_conn']} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def read_meta(out):
    path = os.path.join(out, "meta.json")
    return json.load(open(path)) if os.path.exists(path) else {}


def pooled_runs(dirs):
    """The runs of every directory, each rep renamed "RUN.REP" so that pairs stay within one rep."""
    runs = []
    for number, out in enumerate(dirs, 1):
        for run in read_lines(os.path.join(out, "runs.jsonl")):
            run["rep"] = f"{number}.{run['rep']}"
            runs.append(run)
    return runs


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    dirs = sys.argv[1:]
    pooled = len(dirs) > 1
    out = dirs[0]
    metas = [read_meta(d) for d in dirs]
    meta = metas[0]
    runs = pooled_runs(dirs) if pooled else read_lines(os.path.join(out, "runs.jsonl"))
    idle = [] if pooled else read_lines(os.path.join(out, "idle.jsonl"))
    table = medians(runs)

    lines = []
    if pooled:
        sources = []
        for number, (d, m) in enumerate(zip(dirs, metas), 1):
            sources.append(f"run {number}: {d} ({m.get('date', '?')}, {m.get('versions', '?')})")
        lines.append("Pooled from " + "; ".join(sources) + ". Medians and paired ratios over all "
                     "their reps; idle memory is in each run's own summary.")
        lines.append("")
    elif meta:
        lines.append(f"Measured {meta.get('date', '?')} on {meta.get('cpu_model', '?')}, "
                     f"{meta.get('nproc', '?')} CPUs, Linux {meta.get('kernel', '?')}; "
                     f"{meta.get('reps', '?')} interleaved reps of {meta.get('duration', '?')} s, "
                     f"`wrk -t{meta.get('threads', 1)}`, medians. {meta.get('versions', '')}")
        lines.append("")
    lines.append("CPU % is 100 per core, averaged over the run; RSS is the peak during the run, "
                 "summed over the proxy's processes; other CPU % is what the rest of the machine used "
                 "meanwhile; cv % is the spread of req/s over reps; CPU µs/req is the proxy's CPU "
                 "time per request; errors are summed over reps (socket errors + non-2xx). Each "
                 "ratio is the median over reps of the ratio within one rep, where the targets ran "
                 f"back to back, leaving out the reps where either run was disturbed (other CPU "
                 f"over {NOISY_OTHER_CPU} %) unless every rep was; the last column says how many "
                 "reps were kept.")
    lines.append("")
    lines += load_tables(table, runs)
    lines += peer_tables(table, runs)
    lines += idle_table(idle)
    text = "\n".join(lines)
    print(text)
    if pooled:
        return 0
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump({"meta": meta, "loads": list(table.values()), "idle": idle}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
