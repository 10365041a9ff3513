"""Targeted, deterministic reproductions of what the randomized runs found
(see docs/jepsen.md). ``jepsen/run --scenario NAME``; exit 0 when rems
behaves as documented, 1 when the problem shows, 2 on a harness error.

- ``config-stuck``: a follower that catches up a batch of entries holding a
  configuration change, then becomes leader, must accept membership changes.
- ``join-spare``: a node started with --join that is cut off while the
  leader catches it up must still end up a voter.
- ``heal-latency``: after a 30 s total partition heals, a leader should be
  back within a few election timeouts.
- ``restart-index``: after a restart, a node's X-Rems-Index must not be
  lower than before (its state, on disk, is not older).
"""

import json
import os
import time

from . import net as netmod
from .nodes import Cluster

SCENARIOS = ("config-stuck", "join-spare", "heal-latency", "restart-index")


class Scenario:
    def __init__(self, opts, log, run_dir, state, n, use_netns, remsd):
        self.log = log
        names = ["n%d" % i for i in range(1, n + 1)]
        self.net = netmod.make_network(state.data["run"], names, state,
                                       use_netns)
        self.c = Cluster(self.net, n, remsd, run_dir, state, opts, log)
        self.result = {}

    def put(self, node, k, timeout=5):
        return self.c.call(node, "PUT", "/v1/policies/scenario/%d" % k,
                           body={"v": k}, timeout=timeout).status

    def start(self):
        self.net.setup()
        for node in self.c.nodes:
            self.c.start(node)
        leader = self.c.wait_for_leader(60)
        if leader is None:
            raise RuntimeError("no leader within 60 s")
        self.log("cluster up, leader %s" % leader.name)
        return leader

    def close(self):
        self.c.stop_all()
        self.net.teardown()

    # ------------------------------------------------------------------

    def config_stuck(self):
        c = self.c
        leader = self.start()
        f = [x for x in c.nodes if x is not leader][0]
        v = [x for x in c.nodes if x not in (leader, f)][-1]
        for k in range(5):
            self.put(leader, k)
        c.kill(f)
        self.log("killed follower %s" % f.name)
        for k in range(5, 15):
            self.put(leader, k)
        r = c.call(leader, "DELETE", "/v1/members/%d" % v.id, timeout=10)
        self.log("removed %s: %s" % (v.name, r.status))
        for k in range(15, 25):
            self.put(leader, k)
        c.start(f)
        self.log("restarted %s: it catches up entries, the removal among "
                 "them" % f.name)
        # The finding needs f to lead: ask until it does.
        led = False
        deadline = time.monotonic() + 30
        while not led and time.monotonic() < deadline:
            time.sleep(2)
            b = c.find_leader()
            if b is None:
                continue
            if b[0] is f:
                led = True
                break
            r = c.call(b[0], "POST", "/v1/leadership/transfer",
                       body={"id": f.id}, timeout=10)
            self.log("leadership to %s: %s %s" % (f.name, r.status,
                                                  r.raw[:80]))
        if not led:
            self.result = {"valid": False, "leader": None,
                           "answers": ["%s never led: inconclusive" % f.name]}
            return
        self.log("%s leads" % f.name)
        body = {"id": v.id, "raft_address": v.raft_address,
                "api_address": v.api_address, "role": "spare"}
        answers = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            b = c.find_leader()
            if b is None:
                time.sleep(0.5)
                continue
            r = c.call(b[0], "POST", "/v1/members", body=body, timeout=10)
            answers.append("%s on %s: %s %s" % (time.strftime("%H:%M:%S"),
                                                b[0].name, r.status,
                                                r.raw[:120].decode()))
            self.log("add %s as spare on leader %s: %s %s" % (
                v.name, b[0].name, r.status, r.raw[:120].decode()))
            if r.status == 200:
                break
            time.sleep(3)
        ok = bool(answers) and " 200 " in answers[-1]
        self.result = {"valid": ok, "leader": f.name, "answers": answers}
        if not ok:
            # Control: the same call on another leader.
            r = c.call(f, "POST", "/v1/leadership/transfer",
                       body={"id": leader.id}, timeout=10)
            time.sleep(2)
            b = c.find_leader()
            if b:
                r = c.call(b[0], "POST", "/v1/members", body=body,
                           timeout=10)
                self.result["control"] = "%s on %s: %s %s" % (
                    "same call", b[0].name, r.status, r.raw[:120].decode())
                self.log("control: %s" % self.result["control"])

    def join_spare(self):
        c = self.c
        leader = self.start()
        t = [x for x in c.nodes if x is not leader][0]
        others = [x for x in c.nodes if x is not t]
        for k in range(300):
            c.call(leader, "PUT", "/v1/policies/scenario/pad%d" % k,
                   body={"pad": "x" * 2000})
        r = c.call(leader, "DELETE", "/v1/members/%d" % t.id, timeout=10)
        self.log("removed %s: %s" % (t.name, r.status))
        c.stop(t)
        c.wipe(t)
        t.joined = True
        t.join_via = leader.api_address
        c.start(t)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            st = c.status(t, timeout=0.2)
            if st and st.get("leader"):
                break
            time.sleep(0.01)
        self.log("%s joined as a spare after %.2fs; cutting it off for 8 s"
                 % (t.name, time.monotonic() - t0))
        g = {t.name: set(x.name for x in others)}
        for x in others:
            g[x.name] = {t.name}
        self.net.apply_grudge(g)
        time.sleep(8)
        self.net.heal()
        self.log("healed; waiting 30 s for it to become a voter")
        role = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            b = c.find_leader()
            m = c.members(b[0]) if b else None
            role = m.get(t.id) if m else None
            if role == "voter":
                break
            time.sleep(1)
        self.log("%s is %s" % (t.name, role))
        self.result = {"valid": role == "voter", "role": role,
                       "node": t.name}

    def heal_latency(self):
        c = self.c
        self.start()
        names = c.names
        g = {n: set(names) - {n} for n in names}
        self.net.apply_grudge(g)
        self.log("total partition for 30 s")
        time.sleep(30)
        first = self.net.ns[names[0]]
        ss = netmod.run_cmd(["ip", "netns", "exec", first, "ss", "-tin",
                             "state", "established"], check=False).stdout
        self.net.heal()
        t0 = time.monotonic()
        took = None
        while time.monotonic() - t0 < 60:
            b = c.find_leader(timeout=0.5)
            if b and b[2].get("leader_ready"):
                took = time.monotonic() - t0
                break
            time.sleep(0.1)
        self.log("ready leader %s after the heal" % (
            "%.1fs" % took if took is not None else "not within 60 s"))
        limit = 3 * c.opts.election_timeout_ms / 1000.0 + 1
        backoff = [line.strip() for line in ss.splitlines()
                   if "backoff" in line]
        self.result = {"valid": took is not None and took <= limit,
                       "seconds": took, "limit": limit,
                       "tcp_backoff_before_heal": backoff[:6]}

    def restart_index(self):
        c = self.c
        leader = self.start()
        t = [x for x in c.nodes if x is not leader][0]
        for k in range(50):
            self.put(leader, k)
        # A leadership change: the new leader commits a barrier, an entry
        # of raft's own that the state store never sees.
        other = [x for x in c.nodes if x not in (leader, t)][0]
        r = c.call(leader, "POST", "/v1/leadership/transfer",
                   body={"id": other.id}, timeout=10)
        self.log("leadership to %s: %s" % (other.name, r.status))
        time.sleep(1.5)
        r = c.call(t, "GET", "/v1/policies/scenario/1?consistency=stale")
        before = int(r.header("X-Rems-Index", "0"))
        # Cut it off first, so that it cannot learn the commit index from
        # the leader right after the restart (as in a partition).
        others = [x for x in c.nodes if x is not t]
        g = {t.name: set(x.name for x in others)}
        for x in others:
            g[x.name] = {t.name}
        if self.net.supports_partition:
            self.net.apply_grudge(g)
        c.kill(t)
        c.start(t)
        after = None
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            r = c.call(t, "GET", "/v1/policies/scenario/1?consistency=stale",
                       timeout=1)
            if r.status == 200:
                after = int(r.header("X-Rems-Index", "0"))
                break
            time.sleep(0.02)
        st = c.status(t) or {}
        if self.net.supports_partition:
            self.net.heal()
        self.log("%s: X-Rems-Index %s before the restart, %s right after "
                 "(value %s); /status applied_index %s" % (
                     t.name, before, after, r.body and r.body.get("value"),
                     st.get("applied_index")))
        self.result = {"valid": after is not None and after >= before,
                       "before": before, "after": after, "node": t.name}


def run_scenario(name, opts, log, run_dir, state, use_netns, remsd):
    n = {"config-stuck": 5, "join-spare": 3, "heal-latency": 3,
         "restart-index": 3}[name]
    if name in ("join-spare", "heal-latency") and not use_netns:
        raise RuntimeError("scenario %s needs network namespaces" % name)
    s = Scenario(opts, log, run_dir, state, n, use_netns, remsd)
    try:
        getattr(s, name.replace("-", "_"))()
    finally:
        s.close()
    s.result["scenario"] = name
    with open(os.path.join(run_dir, "results.json"), "w") as fh:
        json.dump(s.result, fh, indent=1)
    return s.result
