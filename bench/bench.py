#!/usr/bin/env python3
"""Benchmarks of a local 3-node rems cluster (not tests: figures only).

  bench/bench.py put       policy PUT throughput and latency (wrk), against
                           the leader and through a follower (forwarding)
  bench/bench.py get       linearizable GET through a follower (read index)
  bench/bench.py failover  leader SIGKILL -> first successful write, N runs
  bench/bench.py all       all of the above

Each run starts a fresh cluster in a temporary directory on free loopback
ports and stops it (by PID) at the end. Prints a JSON summary on stdout.
"""
import argparse
import http.client
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def policy_doc(meta):
    """A valid policy document that places nothing (agent "none") and
    carries @meta (JSON object bytes) as its metadata."""
    return (b'{"placement":{"agents":["none"]},"services":[],"metadata":' +
            meta + b'}')

def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def call(addr, method, path, body=None, headers=None, timeout=5):
    host, port = addr.split(":")
    c = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, data
    finally:
        c.close()


class Cluster:
    def __init__(self, remsd, election=1000, heartbeat=100, n=3, extra=()):
        self.remsd = remsd
        self.dir = tempfile.mkdtemp(prefix="rems-bench-")
        ports = free_ports(2 * n)
        self.raft = {i + 1: "127.0.0.1:%d" % ports[i] for i in range(n)}
        self.api = {i + 1: "127.0.0.1:%d" % ports[n + i] for i in range(n)}
        self.election, self.heartbeat, self.extra = election, heartbeat, extra
        self.procs = {}

    def args(self, i):
        a = [self.remsd, "--node-id", str(i),
             "--data-dir", os.path.join(self.dir, "n%d" % i),
             "--raft-address", self.raft[i], "--api-address", self.api[i],
             "--election-timeout-ms", str(self.election),
             "--heartbeat-timeout-ms", str(self.heartbeat),
             "--log-level", "warn"]
        for j in self.raft:
            a += ["--peer", "%d=%s,%s" % (j, self.raft[j], self.api[j])]
        return a + list(self.extra)

    def start(self, i):
        log = open(os.path.join(self.dir, "n%d.log" % i), "ab")
        self.procs[i] = subprocess.Popen(self.args(i), stderr=log,
                                         stdout=log)

    def start_all(self):
        for i in self.raft:
            self.start(i)

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i)
        p.send_signal(sig)
        p.wait(timeout=30)

    def stop_all(self):
        for i in list(self.procs):
            self.kill(i, signal.SIGTERM)

    def leader(self, among=None, avoid=None, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for i in (among or self.procs):
                try:
                    st, body = call(self.api[i], "GET", "/status", timeout=1)
                    s = json.loads(body)
                    if s["role"] == "leader" and s.get("leader_ready") \
                            and s["node_id"] != avoid:
                        return s["node_id"]
                except (OSError, ValueError, KeyError):
                    pass
            time.sleep(0.01)
        raise RuntimeError("no leader")


def wrk(url, script, seconds, conns, threads=2):
    out = subprocess.run(
        ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % seconds,
         "--latency", "-s", os.path.join(ROOT, "bench", script), url],
        capture_output=True, text=True, check=True).stdout
    def lat(p):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)" % p, out, re.M)
        v, u = float(m.group(1)), m.group(2)
        return v / 1000 if u == "us" else v * 1000 if u == "s" else v
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": lat(50), "p99_ms": lat(99),
            "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else ""}


def bench_put(remsd, seconds, runs):
    res = {}
    for target in ("leader", "follower"):
        for conns in (1, 16, 64):
            samples = []
            for _ in range(runs):
                c = Cluster(remsd, extra=["--snapshot-threshold", "100000",
                                          "--snapshot-trailing", "1024"])
                c.start_all()
                try:
                    lead = c.leader()
                    node = lead if target == "leader" else \
                        [i for i in c.api if i != lead][0]
                    samples.append(wrk("http://%s" % c.api[node], "put.lua",
                                       seconds, conns, min(conns, 2)))
                finally:
                    c.stop_all()
            res["%s_c%d" % (target, conns)] = median_of(samples)
            print(target, conns, res["%s_c%d" % (target, conns)],
                  file=sys.stderr)
    return res


def bench_get(remsd, seconds, runs):
    res = {}
    for stale in (False, True):
        samples = []
        for _ in range(runs):
            c = Cluster(remsd)
            c.start_all()
            try:
                lead = c.leader()
                call(c.api[lead], "PUT", "/v1/policies/bench/get",
                     body=policy_doc(b'{"a":1}'))
                f = [i for i in c.api if i != lead][0]
                # Wait until the follower has applied the key.
                for _ in range(500):
                    st, _ = call(c.api[f], "GET",
                                 "/v1/policies/bench/get?consistency=stale")
                    if st == 200:
                        break
                    time.sleep(0.01)
                path = "/v1/policies/bench/get" + \
                    ("?consistency=stale" if stale else "")
                with open(os.path.join(c.dir, "get.lua"), "w") as fh:
                    fh.write('wrk.path = "%s"\n' % path)
                out = wrk("http://%s" % c.api[f],
                          os.path.join(c.dir, "get.lua"), seconds, 32)
                samples.append(out)
            finally:
                c.stop_all()
        key = "follower_get_%s_c32" % ("stale" if stale else "linearizable")
        res[key] = median_of(samples)
        print(key, res[key], file=sys.stderr)
    return res


def median_of(samples):
    return {k: statistics.median(s[k] for s in samples)
            if isinstance(samples[0][k], (int, float)) else samples[0][k]
            for k in samples[0]}


def bench_failover(remsd, runs, election, heartbeat):
    times = []
    for run in range(runs):
        c = Cluster(remsd, election=election, heartbeat=heartbeat)
        c.start_all()
        try:
            lead = c.leader()
            others = [i for i in c.api if i != lead]
            call(c.api[lead], "PUT", "/v1/policies/f/warm",
                 body=policy_doc(b'{"a":1}'))
            t0 = time.monotonic()
            c.kill(lead)
            n = 0
            while True:
                n += 1
                try:
                    st, _ = call(c.api[others[n % 2]], "PUT",
                                 "/v1/policies/f/after",
                                 body=policy_doc(b'{"a":2}'),
                                 headers={"X-Rems-Request-Id": "fo-%d" % run},
                                 timeout=2)
                    if st == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.005)
            times.append((time.monotonic() - t0) * 1000)
            print("failover run %d: %.0f ms" % (run + 1, times[-1]),
                  file=sys.stderr)
        finally:
            c.stop_all()
    return {"election_ms": election, "heartbeat_ms": heartbeat,
            "runs_ms": [round(t) for t in times],
            "median_ms": round(statistics.median(times))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["put", "get", "failover", "all"])
    ap.add_argument("--remsd", default=os.path.join(ROOT, "build/api/remsd"))
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--failover-runs", type=int, default=5)
    a = ap.parse_args()
    out = {"machine": {"cpus": os.cpu_count(),
                       "kernel": os.uname().release}}
    if a.what in ("put", "all"):
        out["put"] = bench_put(a.remsd, a.seconds, a.runs)
    if a.what in ("get", "all"):
        out["get"] = bench_get(a.remsd, a.seconds, a.runs)
    if a.what in ("failover", "all"):
        out["failover"] = [
            bench_failover(a.remsd, a.failover_runs, 1000, 100),
            bench_failover(a.remsd, a.failover_runs, 300, 30)]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
