#!/usr/bin/env python3
"""Failover drills at full size: run each bundled rems-sim drill several
times and print the medians of its figures as a Markdown table (the
"Failover drills" section of docs/performance.md).

    python3 bench/bench_drills.py [--runs 3] [--build build] [drill ...]
    python3 bench/bench_drills.py --summarize DIR   # reports already made

Each run is `rems-sim --seed <n> --json DIR/<drill>-<n>.json`, seeds 1..runs,
on a fresh local cluster. A run whose assertions fail is reported as such
and its figures still count.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

DRILLS = ["leader-kill", "leader-pause", "minority-partition",
          "rolling-restart", "crash-loop", "agent-storm"]


def run(args, drill, seed, out):
    path = os.path.join(out, "%s-%d.json" % (drill, seed))
    cmd = [os.path.join(args.build, "simulator", "rems-sim"), "--quiet",
           "--seed", str(seed), "--json", path,
           "--svg", os.path.join(out, "%s-%d.svg" % (drill, seed)),
           os.path.join("simulator", "scenarios", drill + ".yaml")]
    print("bench_drills: %s seed %d ..." % (drill, seed), file=sys.stderr,
          flush=True)
    rc = subprocess.call(cmd, stdout=subprocess.DEVNULL)
    print("bench_drills: %s seed %d exit %d" % (drill, seed, rc),
          file=sys.stderr, flush=True)


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, unit=" ms"):
    return "–" if v is None else "%d%s" % (round(v), unit)


def summarize(out, drills):
    rows = []
    for drill in drills:
        reports = []
        for path in sorted(glob.glob(os.path.join(out, drill + "-*.json"))):
            with open(path) as f:
                reports.append(json.load(f))
        if not reports:
            continue
        leader_faults = [[f for f in r["faults"] if f["removed_leader"]]
                         for r in reports]
        first = [fl[0] if fl else {} for fl in leader_faults]
        worst_reconnect = []
        for r in reports:
            p99 = [f["reconnect_p99_ms"] for f in r["faults"]
                   if f["reconnect_p99_ms"] is not None]
            worst_reconnect.append(max(p99) if p99 else None)
        p50 = []
        for r in reports:
            v = [f["reconnect_p50_ms"] for f in r["faults"]
                 if f["reconnect_p50_ms"] is not None]
            p50.append(max(v) if v else None)
        c = [r["commands"] for r in reports]
        rows.append({
            "drill": drill,
            "runs": len(reports),
            "passed": sum(1 for r in reports if r["passed"]),
            "agents": reports[0]["agents"],
            "detect": med([f.get("detection_ms") for f in first]),
            "elect": med([f.get("election_ms") for f in first]),
            "commit": med([f.get("first_commit_ms") for f in first]),
            "resumed": med([f.get("commands_resumed_ms") for f in first]),
            "rec50": med(p50),
            "rec99": med(worst_reconnect),
            "issued": med([x["issued"] for x in c]),
            "lost": sum(x["lost"] for x in c),
            "dup": sum(x["duplicated"] for x in c),
            "late": sum(x["late"] for x in c),
            "drift": med([r["drift"]["p99_ms"] for r in reports]),
            "nominal": med([r["nominal_ms"] for r in reports]),
            "duration": med([r["duration_ms"] / 1000.0 for r in reports]),
        })
    print("| drill | agents | passed | detection | election | first commit "
          "| commands resumed | reconnect p50 / p99 | commands issued "
          "(median) | lost / duplicated / late (all runs) | drift p99 "
          "| nominal after | run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d/%d | %s | %s | %s | %s | %s / %s | %d | "
              "%d / %d / %d | %s | %s | %s |" % (
                  r["drill"], r["agents"], r["passed"], r["runs"],
                  fmt(r["detect"]), fmt(r["elect"]), fmt(r["commit"]),
                  fmt(r["resumed"]), fmt(r["rec50"]), fmt(r["rec99"]),
                  r["issued"], r["lost"], r["dup"], r["late"],
                  fmt(r["drift"]), fmt(r["nominal"]),
                  fmt(r["duration"], " s")))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--build", default="build")
    p.add_argument("--out", default="drill-bench")
    p.add_argument("--summarize", metavar="DIR",
                   help="only summarize the reports in DIR")
    p.add_argument("drills", nargs="*", default=DRILLS)
    args = p.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if args.summarize:
        summarize(args.summarize, args.drills)
        return
    os.makedirs(args.out, exist_ok=True)
    for drill in args.drills:
        for seed in range(1, args.runs + 1):
            run(args, drill, seed, args.out)
    summarize(args.out, args.drills)


if __name__ == "__main__":
    main()
