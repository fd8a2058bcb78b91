#!/usr/bin/env python3
"""Writes the markdown report of one `loadtests/run` results folder to stdout.

Reads, per scenario folder: run.json (what ran, exit codes), summary.json (k6's
--summary-export), verifier.json, resources.csv, the edge host's metrics at start and end
(edge-metrics-*.prom) and, for fault drills, fault.json.
`report.py --recovery FOLDER` prints a drill's recovery time in seconds instead. Rates are counts divided by the active
load time (the `active_seconds` gauge), not by k6's whole run, which includes setup.
"""

import csv
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

REQUEST = re.compile(r"^http_req_duration\{name:(?P<name>[^}]+)\}$")
BUCKET = re.compile(r'^edge_request_duration_seconds_bucket\{le="(?P<le>[^"]+)",component="(?P<component>[^"]+)",'
                    r'route="(?P<route>[^"]+)"\} (?P<count>\S+)$')
# k6's own metrics and ours that only the report reads (wall-clock failure times).
NOT_BUSINESS = ("http_req", "data_", "iteration", "vus", "checks", "group_duration", "active_seconds", "failed_at")


def load(path, default=None):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def ms(value):
    return f"{value:.1f}" if value is not None else "–"


def machine():
    cpus = os.cpu_count()
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    return f"commit {commit}, {cpus} CPUs ({model}), {platform.system()} {platform.release()}"


def thresholds(metrics):
    """(metric, expression, passed) for every threshold k6 evaluated."""
    rows = []
    for name, metric in sorted(metrics.items()):
        for expression, crossed in metric.get("thresholds", {}).items():
            rows.append((name, expression, not crossed))
    return rows


def active_seconds(metrics, run):
    gauge = metrics.get("active_seconds", {})
    return gauge.get("max") or run.get("seconds") or 1


def request_rows(metrics, seconds):
    """One row per named request; a scenario without per-name thresholds (k6 exports a
    tagged submetric only when a threshold names it) gets one row over all its requests."""
    names = [match["name"] for key in sorted(metrics) if (match := REQUEST.match(key))]
    if names:
        return [request_row(metrics, seconds, name, f"{{name:{name}}}") for name in names]
    if "http_req_duration" in metrics:
        return [request_row(metrics, seconds, "all requests", "")]
    return []


def request_row(metrics, seconds, label, tag):
    trend = metrics[f"http_req_duration{tag}"]
    count = metrics.get(f"http_reqs{tag}", {}).get("count", 0)
    failed = metrics.get(f"http_req_failed{tag}", {}).get("value")
    return "| {} | {} | {:.0f} | {} | {} | {} | {} | {} |".format(
        label, count, count / seconds, ms(trend.get("p(50)")), ms(trend.get("p(95)")),
        ms(trend.get("p(99)")), ms(trend.get("max")),
        f"{failed * 100:.2f} %" if failed is not None else "–")


def business_rows(metrics, seconds):
    """The scenario's own metrics (held seats, payments, journey steps, …)."""
    rows = []
    for name, metric in sorted(metrics.items()):
        if name.startswith(NOT_BUSINESS):
            continue
        if "count" in metric:
            rows.append(f"| {name} | {metric['count']} ({metric['count'] / seconds:.1f}/s) |")
        elif "passes" in metric:
            rows.append(f"| {name} | {metric['value'] * 100:.2f} % ({metric['passes']} of "
                        f"{metric['passes'] + metric['fails']}) |")
        elif "p(95)" in metric:
            p90 = f", P90 {metric['p(90)']:.2f}" if "p(90)" in metric else ""
            rows.append(f"| {name} | P50 {metric['p(50)']:.2f}{p90}, P95 {metric['p(95)']:.2f}, max {metric['max']:.2f} |")
        elif "value" in metric and "max" in metric:
            rows.append(f"| {name} | max {metric['max']:.0f}, last {metric['value']:.0f} |")
    return rows


def resources(path, requests, crowd=0):
    """Start, end and peak of each sampled resource; per request over the run, the edge
    host's CPU and the commands Redis processed (k6's own setup requests included); and,
    for a run that measured its waiting crowd, Redis's growth per waiting fan at the
    crowd's peak (everything a fan costs: places, users, rate-limit counters, of fans who
    left too)."""
    try:
        with path.open() as handle:
            samples = [{k: float(v or 0) for k, v in row.items()} for row in csv.DictReader(handle)]
    except FileNotFoundError:
        return []
    if len(samples) < 2:
        return []
    first, last = samples[0], samples[-1]
    mib = 1024 * 1024

    def line(label, key, scale=1.0, unit=""):
        values = [s[key] / scale for s in samples]
        return f"| {label} | {values[0]:.0f}{unit} | {values[-1]:.0f}{unit} | {max(values):.0f}{unit} |"

    rows = [
        line("edge host RSS", "app_rss_kb", 1024, " MiB"),
        line("bridge RSS", "bridge_rss_kb", 1024, " MiB"),
        line("Redis used memory", "redis_used_bytes", mib, " MiB"),
        line("MySQL connections", "mysql_connections"),
    ]
    limit = last["redis_max_bytes"]
    peak = max(s["redis_used_bytes"] for s in samples)
    if limit:
        rows.append(f"| Redis memory of its limit | {first['redis_used_bytes'] / limit * 100:.1f} % | "
                    f"{last['redis_used_bytes'] / limit * 100:.1f} % | {peak / limit * 100:.1f} % |")
    hits = last["redis_hits"] - first["redis_hits"]
    misses = last["redis_misses"] - first["redis_misses"]
    # A restarted Redis (the Redis drill) starts its counters again: no rate then.
    if hits >= 0 and misses >= 0 and hits + misses:
        rows.append(f"| Redis key hit rate over the run | | {hits / (hits + misses) * 100:.2f} % "
                    f"({hits:.0f} hits, {misses:.0f} misses) | |")
    ticks = last.get("app_cpu_ticks", 0) - first.get("app_cpu_ticks", 0)
    commands = last.get("redis_commands", 0) - first.get("redis_commands", 0)
    # Ticks are 1/100 s (Linux's USER_HZ); a restarted app or Redis starts again: no rate then.
    if requests and ticks > 0:
        rows.append(f"| edge host CPU per request | | {ticks * 10_000 / requests:.0f} µs | |")
    if requests and commands > 0:
        rows.append(f"| Redis commands per request | | {commands / requests:.2f} | |")
    if crowd:
        rows.append(f"| Redis bytes per waiting fan (growth / crowd peak {crowd:.0f}) | | | "
                    f"{(peak - first['redis_used_bytes']) / crowd:.0f} B |")
    return rows


def edge_buckets(path):
    """The edge host's request-duration histogram: {(component, route): {le: count}}."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    buckets = {}
    for line in text.splitlines():
        match = BUCKET.match(line)
        if match:
            le = float("inf") if match["le"] == "+Inf" else float(match["le"])
            buckets.setdefault((match["component"], match["route"]), {})[le] = float(match["count"])
    return buckets


def server_latency(folder):
    """Per route, the requests the edge host served during the run and the P50/P95/P99 of
    the time it took from request head to response head, as bucket upper bounds (the
    histogram's buckets double from 0.1 ms): the server's side of what k6 measured, without
    k6's own delays on the shared cores."""
    start, end = edge_buckets(folder / "edge-metrics-start.prom"), edge_buckets(folder / "edge-metrics-end.prom")
    rows = []
    for key, after in sorted(end.items()):
        before = start.get(key, {})
        grown = sorted((le, count - before.get(le, 0)) for le, count in after.items())
        total = grown[-1][1] if grown else 0
        if total <= 0:
            continue

        def quantile(q):
            le = next(le for le, count in grown if count >= q * total)
            return "> 6.6 s" if le == float("inf") else f"≤ {le * 1000:g}"

        rows.append(f"| {key[0]} `{key[1]}` | {total:.0f} | {quantile(0.5)} | {quantile(0.95)} | {quantile(0.99)} |")
    if not rows:
        return []
    return ["", "| served by the edge host | requests | P50 ms | P95 ms | P99 ms |",
            "|---|---:|---:|---:|---:|"] + rows


def recovery_seconds(folder):
    """How long after the dependency was serving again the system was whole again: the
    later of its last failed request and the outbox catching up (inf if it never did)."""
    fault = load(folder / "fault.json")
    if not fault:
        return 0.0
    if fault.get("outbox_caught_up_at") is None:
        return float("inf")
    last_failure = load(folder / "summary.json", {}).get("metrics", {}).get("failed_at", {}).get("max")
    ends = [fault["outbox_caught_up_at"]] + ([last_failure] if last_failure is not None else [])
    return max(0.0, max(ends) - fault["restored_at"])


def drill_lines(folder, run, metrics):
    fault = load(folder / "fault.json")
    if not fault:
        return []
    failures = metrics.get("drill_failures", {}).get("count", 0)
    caught_up = fault.get("outbox_caught_up_at")
    pipeline = (f"the outbox caught up {caught_up - fault['restored_at']:.1f} s after the restore"
                if caught_up else "**the outbox had not caught up 60 s after the restore**")
    unexpected = metrics.get("drill_unexpected", {}).get("count", 0)
    return ["", f"Fault drill: {fault['fault']} away from {fault['stopped_at'] - run.get('started', 0):.0f} s "
            f"after k6 started, serving again {fault['restored_at'] - fault['stopped_at']:.1f} s later; "
            f"of {metrics.get('http_reqs', {}).get('count', 0)} requests {failures} failed, "
            f"{unexpected} of them not as a clean 503; "
            f"{pipeline}; **recovery {recovery_seconds(folder):.1f} s** (the later of the last failure and the "
            f"outbox catching up, after the restore; the bar is 30 s)."]


def scenario_section(folder):
    run = load(folder / "run.json", {})
    metrics = load(folder / "summary.json", {}).get("metrics", {})
    verifier = load(folder / "verifier.json", {"ok": False, "checks": []})
    seconds = active_seconds(metrics, run)
    lines = [f"## {folder.name}", ""]
    if run.get("resources", "none") != "none":
        lines.append(f"Edge host limited to the {run['resources']} spec.")
    lines.append(f"Load ran {seconds:.0f} s after setup (wall time {run.get('seconds', '?')} s); "
                 f"k6 exit {run.get('k6_exit', '?')}, verifier exit {run.get('verifier_exit', '?')}.")
    flushed = folder / "flushed_at"
    if flushed.exists():
        lines.append(f"Read cache flushed {int(flushed.read_text()) - run.get('started', 0)} s after k6 started.")
    lines += drill_lines(folder, run, metrics)
    fuzz = load(folder / "fuzz.json")
    if fuzz:
        lines += ["", f"schemathesis against openapi.yaml: {fuzz['cases']} generated requests over "
                      f"{fuzz['operations']} operations; {fuzz['failures']} failed checks (5xx, undocumented "
                      f"status, content type, header or body), {fuzz['errors']} errors; "
                      f"{fuzz['generator_crashes']} crashes inside the generator. Details in fuzz.log."]
    lines += ["", "| request | count | per s | P50 ms | P95 ms | P99 ms | max ms | failed |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += request_rows(metrics, seconds)
    business = business_rows(metrics, seconds)
    if business:
        lines += ["", "| metric | value |", "|---|---|"] + business
    lines += ["", "| threshold | | result |", "|---|---|---|"]
    lines += [f"| `{name}` | `{expr}` | {'pass' if ok else '**FAIL**'} |" for name, expr, ok in thresholds(metrics)]
    lines += ["", "| invariant | examined | violations |", "|---|---:|---:|"]
    lines += [f"| {c['name']} | {c['examined']} | {c['violations'] if not c['violations'] else '**%d**' % c['violations']} |"
              for c in verifier["checks"]]
    if not verifier["checks"]:
        lines.append("| verifier did not report | | **?** |")
    res = resources(folder / "resources.csv", metrics.get("http_reqs", {}).get("count", 0),
                    metrics.get("waiting_crowd", {}).get("max", 0))
    if res:
        lines += ["", "| resource | start | end | max |", "|---|---:|---:|---:|"] + res
    lines += server_latency(folder)
    return lines, run, metrics, verifier


def overall(metrics, seconds):
    """All requests of a run: rate, P95 and error rate, the seed reports' comparison."""
    duration = metrics.get("http_req_duration", {})
    count = metrics.get("http_reqs", {}).get("count", 0)
    failed = metrics.get("http_req_failed", {}).get("value", 0)
    return count / seconds, duration.get("p(95)"), failed


def comparison(runs):
    """The resource specs side by side, one row per scenario and spec."""
    rows = ["| scenario | resources | requests/s | P95 ms | errors | result |", "|---|---|---:|---:|---:|---|"]
    for folder, run, metrics in sorted(runs, key=lambda r: (r[1]["scenario"], SPECS.index(r[1]["resources"]))):
        rate, p95, failed = overall(metrics, active_seconds(metrics, run))
        ok = run.get("k6_exit") == 0 and run.get("verifier_exit") == 0
        rows.append(f"| {run['scenario']} | {run['resources']} | {rate:.0f} | {ms(p95)} | {failed * 100:.2f} % | "
                    f"{'pass' if ok else '**FAIL**'} |")
    return rows


SPECS = ["small", "medium", "large", "none"]


def main():
    if sys.argv[1] == "--recovery":
        print(f"{recovery_seconds(Path(sys.argv[2])):.1f}")
        return
    out = Path(sys.argv[1])
    folders = sorted((p for p in out.iterdir() if (p / "run.json").exists()),
                     key=lambda p: load(p / "run.json", {}).get("started", 0))
    summary = ["| scenario | thresholds | invariants | result |", "|---|---|---|---|"]
    sections = []
    limited = []
    for folder in folders:
        lines, run, metrics, verifier = scenario_section(folder)
        if run.get("resources", "none") != "none":
            limited.append((folder, run, metrics))
        sections += [""] + lines
        rows = thresholds(metrics)
        passed = sum(ok for _, _, ok in rows)
        green = sum(not c["violations"] for c in verifier["checks"])
        ok = run.get("k6_exit") == 0 and run.get("verifier_exit") == 0
        summary.append(f"| {folder.name} | {passed}/{len(rows)} passed | {green}/{len(verifier['checks'])} green | "
                       f"{'pass' if ok else '**FAIL**'} |")
    print(f"# Load test report: {out.name}")
    print()
    print(f"{machine()}; k6 runs on the same machine as the app and its services, yielding to them (niced 5, in a scheduler group of its own).")
    print()
    print("\n".join(summary))
    if limited:
        print()
        print("Resource specs (edge host limited by loadtests/limit: small 0.5 CPU / 512 MB, "
              "medium 1 CPU / 1 GB, large 2 CPUs / 2 GB; Redis, MariaDB, the broker, the bridge "
              "and k6 share the rest of the machine):")
        print()
        print("\n".join(comparison(limited)))
    print("\n".join(sections))


if __name__ == "__main__":
    main()
