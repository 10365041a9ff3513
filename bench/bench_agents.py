#!/usr/bin/env python3
"""The agent benchmark: a local 3-node rems cluster with agent listeners and
simulated agents from rems-agent-load (figures only, not a test).

  bench/bench_agents.py capacity  agents held by the leader: for each count
                                  (--counts), all agents connected with
                                  heartbeats every 1000 ms, then the leader's
                                  CPU and RSS over --seconds; the largest
                                  count whose leader stays under 50 % of one
                                  core, with every agent connected throughout
                                  and no change of leader (--extend: keep
                                  doubling past the last count while it
                                  holds). Agents start at --ramp per second:
                                  on 2 cores, 500/s overloads the machine
                                  past 5,000 agents and the connect timeouts
                                  feed a retry storm
  bench/bench_agents.py latency   command issue -> acked through the admin
                                  API, --rate commands/s for --seconds, with
                                  --latency-agents agents connected
  bench/bench_agents.py all       both

Each run starts a fresh cluster in a temporary directory on free loopback
ports (certificates from tests/lib/make-test-ca.sh; every node uses
node1.pem, whose SAN holds IP 127.0.0.1, and agents check the name
node1.rems.test) and stops it, and the load generator, by PID. Figures are
medians over --runs runs. Prints a JSON summary on stdout (and to --json).
"""
import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
import bench  # noqa: E402  (the cluster helpers of bench.py)

TICK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def cpu_ticks(pid):
    """utime + stime of @pid, in clock ticks."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class AgentCluster(bench.Cluster):
    """bench.Cluster with an agent listener on every node."""

    def __init__(self, remsd, certs, heartbeat_ms=1000, lease_ms=10000):
        super().__init__(remsd)
        ports = bench.free_ports(len(self.raft))
        self.agent = {i: "127.0.0.1:%d" % ports[i - 1] for i in self.raft}
        self.certs = certs
        self.agent_extra = ["--agent-heartbeat-ms", str(heartbeat_ms),
                            "--lease-ttl-ms", str(lease_ms)]

    def args(self, i):
        return super().args(i) + [
            "--agent-address", self.agent[i],
            "--tls-cert", os.path.join(self.certs, "node1.pem"),
            "--tls-key", os.path.join(self.certs, "node1.key"),
            "--tls-ca", os.path.join(self.certs, "ca.pem")] + self.agent_extra

    def close(self):
        self.stop_all()
        shutil.rmtree(self.dir, ignore_errors=True)


class Load:
    """A rems-agent-load process; follows its progress lines."""

    def __init__(self, binary, cluster, certs, agents, ramp, out, extra=()):
        self.out = out
        self.connected = 0
        self.lines = []
        args = [binary,
                "--endpoints", ",".join(cluster.agent.values()),
                "--ca-cert", os.path.join(certs, "site-ca", "ca.pem"),
                "--ca-key", os.path.join(certs, "site-ca", "ca.key"),
                "--ca-for-server", os.path.join(certs, "ca.pem"),
                "--server-name", "node1.rems.test",
                "--agents", str(agents), "--ramp-per-s", str(ramp),
                "--services", "4", "--duration", "100000",
                "--json", out] + list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())
            for tok in line.split():
                if tok.startswith("connected="):
                    self.connected = int(tok.split("=")[1])

    def wait_connected(self, n, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            if self.connected >= n:
                return True
            time.sleep(0.2)
        return False

    def stop(self):
        """SIGINT, then the summary it wrote."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(timeout=5)
        try:
            with open(self.out) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None


def make_certs(tmp):
    certs = os.path.join(tmp, "certs")
    subprocess.run(["sh", os.path.join(ROOT, "tests/lib/make-test-ca.sh"),
                    certs], check=True, capture_output=True)
    return certs


# ---------------------------------------------------------------------------
# Capacity


def leader_of(c):
    """(node id, term) of the ready leader, or (None, None)."""
    try:
        lead = c.leader(timeout=10)
        st, body = bench.call(c.api[lead], "GET", "/status", timeout=2)
        return lead, json.loads(body)["term"]
    except (OSError, ValueError, KeyError, RuntimeError):
        return None, None


def capacity_run(a, certs, tmp, n):
    c = AgentCluster(a.remsd, certs, heartbeat_ms=1000)
    c.start_all()
    load = None
    try:
        lead, term = leader_of(c)
        lpid = c.procs[lead].pid
        out = os.path.join(tmp, "cap-%d-%d.json" % (n, time.time_ns()))
        load = Load(a.load, c, certs, n, a.ramp, out, ["--no-execs"])
        t_start = time.time()
        # While the agents connect: the leader's busiest second.
        ramp_peak, prev = 0.0, cpu_ticks(lpid)
        ok = False
        deadline = time.time() + a.connect_timeout
        while time.time() < deadline and load.proc.poll() is None:
            if load.connected >= n:
                ok = True
                break
            time.sleep(1)
            cur = cpu_ticks(lpid)
            ramp_peak = max(ramp_peak, 100.0 * (cur - prev) / TICK)
            prev = cur
        ramp_s = time.time() - t_start
        if not ok:
            log("  %d agents: only %d connected after %d s" %
                (n, load.connected, a.connect_timeout))
        time.sleep(a.settle)
        lead2, term2 = leader_of(c)
        lpid = c.procs[lead2].pid if lead2 in c.procs else lpid
        fpids = [c.procs[i].pid for i in c.procs if i != lead2]
        t0 = time.monotonic()
        l0, g0 = cpu_ticks(lpid), cpu_ticks(load.proc.pid)
        f0 = [cpu_ticks(p) for p in fpids]
        rss_max = 0
        min_connected = load.connected
        while time.monotonic() - t0 < a.seconds:
            time.sleep(1)
            rss_max = max(rss_max, rss_kb(lpid))
            min_connected = min(min_connected, load.connected)
        dt = time.monotonic() - t0
        l1, g1 = cpu_ticks(lpid), cpu_ticks(load.proc.pid)
        f1 = [cpu_ticks(p) for p in fpids]
        load_rss = rss_kb(load.proc.pid)
        lead3, term3 = leader_of(c)
        summary = load.stop()
        load = None
        st = summary["stats"] if summary else {}
        setup_s = (summary["mint_ms"] + summary["contexts_ms"]) / 1000.0 \
            if summary else 0.0
        return {
            "agents": n,
            "all_connected": ok and min_connected >= n,
            "same_leader": lead == lead2 == lead3 and term == term2 == term3,
            "connect_all_s": round(ramp_s - setup_s, 1),
            "ramp_leader_cpu_peak_pct": round(ramp_peak, 1),
            "leader_cpu_pct": round(100.0 * (l1 - l0) / TICK / dt, 1),
            "followers_cpu_pct": round(
                100.0 * sum(b - x for x, b in zip(f0, f1)) / TICK / dt /
                max(1, len(fpids)), 1),
            "loadgen_cpu_pct": round(100.0 * (g1 - g0) / TICK / dt, 1),
            "leader_rss_mb": round(rss_max / 1024.0, 1),
            "loadgen_rss_mb": round(load_rss / 1024.0, 1),
            "mint_ms": round(summary["mint_ms"]) if summary else None,
            "contexts_ms": round(summary["contexts_ms"]) if summary else None,
            "connect_p50_ms": summary["connect_latency_ms"]["p50"]
            if summary else None,
            "connect_p99_ms": summary["connect_latency_ms"]["p99"]
            if summary else None,
            "sessions_lost": st.get("sessions_lost"),
            "heartbeat_timeouts": st.get("heartbeat_timeouts"),
            "redirects": st.get("redirects"),
        }
    finally:
        if load is not None:
            load.stop()
        c.close()


def median_run(samples):
    out = {}
    for k in samples[0]:
        vals = [s[k] for s in samples if s[k] is not None]
        if vals and all(isinstance(v, bool) for v in vals):
            out[k] = all(vals)
        elif vals and all(isinstance(v, (int, float)) for v in vals):
            out[k] = statistics.median(vals)
        else:
            out[k] = vals[0] if vals else None
    return out


def bench_capacity(a, certs, tmp):
    counts = [int(x) for x in a.counts.split(",")]
    results = []
    best = None
    i = 0
    while i < len(counts):
        n = counts[i]
        samples = []
        for r in range(a.runs):
            s = capacity_run(a, certs, tmp, n)
            log("  capacity %d agents, run %d: %s" % (n, r + 1, s))
            samples.append(s)
        m = median_run(samples)
        m["runs"] = samples
        results.append(m)
        holds = m["all_connected"] and m["same_leader"] and \
            m["leader_cpu_pct"] < 50.0
        log("capacity %d agents: leader %.1f %% CPU, %.0f MB; load "
            "generator %.1f %%; %s" %
            (n, m["leader_cpu_pct"], m["leader_rss_mb"],
             m["loadgen_cpu_pct"], "holds" if holds else "does not hold"))
        if not holds:
            break
        best = n
        if i == len(counts) - 1 and a.extend and n * 2 <= a.max_agents:
            counts.append(n * 2)
        i += 1
    return {"heartbeat_ms": 1000, "seconds": a.seconds, "ramp_per_s": a.ramp,
            "largest_under_half_core": best, "results": results}


# ---------------------------------------------------------------------------
# Latency


def issue_and_wait(api, agent, service, poll_s, out, lock):
    body = json.dumps({"agent": agent, "action": "restart",
                       "service": service, "ttl_ms": 30000})
    t0 = time.monotonic()
    w0 = time.time()
    try:
        st, data = bench.call(api, "POST", "/v1/commands", body=body)
        if st != 201:
            with lock:
                out.append({"error": "POST %d" % st})
            return
        cid = json.loads(data)["id"]
        path = "/v1/commands/%s?consistency=stale" % cid
        polls = 0
        while True:
            st, data = bench.call(api, "GET", path)
            polls += 1
            if st == 200:
                d = json.loads(data)
                if d["state"] != "pending":
                    t1 = time.monotonic()
                    with lock:
                        out.append({"id": cid, "state": d["state"],
                                    "ms": (t1 - t0) * 1000.0,
                                    "issued_wall_ms": w0 * 1000.0,
                                    "polls": polls})
                    return
            if time.monotonic() - t0 > 35:
                with lock:
                    out.append({"id": cid, "error": "still pending"})
                return
            time.sleep(poll_s)
    except (OSError, ValueError, KeyError) as e:
        with lock:
            out.append({"error": repr(e)})


def pct(vals, p):
    v = sorted(vals)
    if not v:
        return None
    k = max(0, min(len(v) - 1, int(-(-p * len(v) // 1)) - 1))
    return v[k]


def latency_run(a, certs, tmp, nodelay):
    c = AgentCluster(a.remsd, certs, heartbeat_ms=1000)
    c.start_all()
    load = None
    try:
        lead = c.leader()
        api = c.api[lead]
        out = os.path.join(tmp, "lat-%d.json" % time.time_ns())
        extra = ["--nodelay"] if nodelay else []
        load = Load(a.load, c, certs, a.latency_agents, 500, out, extra)
        if not load.wait_connected(a.latency_agents, a.connect_timeout):
            raise RuntimeError("agents did not connect")
        time.sleep(2)
        results, lock, threads = [], threading.Lock(), []
        n = int(a.rate * a.latency_seconds)
        t0 = time.monotonic()
        for k in range(n):
            due = t0 + k / a.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            agent = "sim-%d" % random.randint(1, a.latency_agents)
            th = threading.Thread(target=issue_and_wait, args=(
                api, agent, "svc-%d" % random.randint(0, 3),
                a.poll_ms / 1000.0, results, lock))
            th.start()
            threads.append(th)
        for th in threads:
            th.join()
        summary = load.stop()
        load = None
        ok = [r for r in results if "ms" in r and r["state"] == "acked"]
        # issue -> receipt at the agent, from the executions' wall clock
        # (same machine, same clock).
        receipt = []
        if summary:
            by_id = {e["id"]: e for e in summary.get("executions", [])}
            for r in ok:
                e = by_id.get(r["id"])
                if e:
                    receipt.append(e["receipt_wall_ms"] - r["issued_wall_ms"])
        ms = [r["ms"] for r in ok]
        return {
            "commands": n, "acked": len(ok),
            "other": len(results) - len(ok),
            "p50_ms": round(pct(ms, 0.5), 2) if ms else None,
            "p99_ms": round(pct(ms, 0.99), 2) if ms else None,
            "max_ms": round(max(ms), 2) if ms else None,
            "issue_to_receipt_p50_ms": round(pct(receipt, 0.5), 2)
            if receipt else None,
            "polls_p50": pct([r["polls"] for r in ok], 0.5),
            "executed": summary["stats"]["executed"] if summary else None,
            "invariants_ok": summary["invariants"]["ok"] if summary else None,
        }
    finally:
        if load is not None:
            load.stop()
        c.close()


def bench_latency(a, certs, tmp, nodelay=False):
    samples = []
    for r in range(a.runs):
        s = latency_run(a, certs, tmp, nodelay)
        log("  latency run %d%s: %s" % (r + 1, " (nodelay)" if nodelay else "",
                                        s))
        samples.append(s)
    m = median_run(samples)
    m["runs"] = samples
    m.update({"agents": a.latency_agents, "rate_per_s": a.rate,
              "seconds": a.latency_seconds, "poll_ms": a.poll_ms,
              "tcp_nodelay": nodelay})
    log("latency%s: issue -> acked p50 %s ms, p99 %s ms" %
        (" (nodelay)" if nodelay else "", m["p50_ms"], m["p99_ms"]))
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["capacity", "latency", "all"])
    ap.add_argument("--remsd", default=os.path.join(ROOT, "build/api/remsd"))
    ap.add_argument("--load", default=os.path.join(
        ROOT, "build/bench/rems-agent-load"))
    ap.add_argument("--counts", default="500,1000,2000,5000,10000")
    ap.add_argument("--extend", action="store_true",
                    help="keep doubling past the last count while it holds")
    ap.add_argument("--max-agents", type=int, default=40000)
    ap.add_argument("--ramp", type=int, default=200,
                    help="agents started per second")
    ap.add_argument("--seconds", type=int, default=30)
    ap.add_argument("--settle", type=int, default=5,
                    help="seconds between all connected and measuring")
    ap.add_argument("--connect-timeout", type=int, default=600)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--latency-agents", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--latency-seconds", type=int, default=30)
    ap.add_argument("--poll-ms", type=float, default=2)
    ap.add_argument("--nodelay", action="store_true",
                    help="also measure latency with TCP_NODELAY on agents")
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rems-bench-agents-")
    try:
        certs = make_certs(tmp)
        out = {"machine": {"cpus": os.cpu_count(),
                           "kernel": os.uname().release}}
        if a.what in ("capacity", "all"):
            out["capacity"] = bench_capacity(a, certs, tmp)
        if a.what in ("latency", "all"):
            out["latency"] = bench_latency(a, certs, tmp)
            if a.nodelay:
                out["latency_nodelay"] = bench_latency(a, certs, tmp, True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
