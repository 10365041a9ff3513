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
- ``late-command``: a command POSTed through a follower whose forward to
  the leader is cut off (the follower answers 504 or 503) must not run
  after its ttl counted from the POST.
"""

import json
import os
import shutil
import time

from . import agents as agentsmod
from . import checkers
from . import net as netmod
from .nodes import Cluster
from .workloads import policy_doc

SCENARIOS = ("config-stuck", "join-spare", "heal-latency", "restart-index",
             "late-command")
MAKE_TEST_CA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tests", "lib", "make-test-ca.sh")


class Scenario:
    def __init__(self, opts, log, run_dir, state, n, use_netns, remsd):
        self.log = log
        names = ["n%d" % i for i in range(1, n + 1)]
        self.net = netmod.make_network(state.data["run"], names, state,
                                       use_netns)
        self.c = Cluster(self.net, n, remsd, run_dir, state, opts, log)
        self.result = {}
        self.agents = None
        self.opts = opts
        self.run_dir = run_dir
        self.state = state
        self.remsd = remsd

    def with_agents(self):
        """Nodes with agent listeners, and one rems-agent per node (started
        by start_agents())."""
        agent_bin = os.path.abspath(self.opts.agent_bin or os.path.join(
            os.path.dirname(os.path.dirname(self.remsd)), "agentproto",
            "rems-agent"))
        if not os.access(agent_bin, os.X_OK):
            raise RuntimeError("rems-agent not found: %s (--agent-bin)"
                               % agent_bin)
        certs = os.path.join(self.run_dir, "certs")
        self.agents = agentsmod.Agents(self.c, self.net, self.run_dir,
                                       self.state, agent_bin, certs,
                                       ["s1", "s2"], self.log)
        self.c.agent_tls = agentsmod.make_certs(
            MAKE_TEST_CA, certs, self.agents.ids,
            os.path.join(self.run_dir, "certs.log"))

    def start_agents(self):
        self.agents.write_configs()
        self.agents.start_all()
        view, ok = self.agents.wait_online(60)
        if not ok:
            raise RuntimeError("agents not online: %s" % view)
        self.log("agents %s online" % " ".join(self.agents.ids))

    def put(self, node, k, timeout=5):
        return self.c.call(node, "PUT", "/v1/policies/scenario/%d" % k,
                           body=policy_doc({"v": k}),
                           timeout=timeout).status

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
        if self.agents is not None:
            self.agents.stop_all()
            shutil.rmtree(os.path.join(self.run_dir, "certs"),
                          ignore_errors=True)
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
                   body=policy_doc({"pad": "x" * 2000}))
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


    def late_command(self):
        c = self.c
        self.with_agents()
        leader = self.start()
        self.start_agents()
        f = [x for x in c.nodes if x is not leader][0]
        t = [x for x in c.nodes if x not in (leader, f)][0]
        agent = "a%d" % t.index   # connected to the leader from t: not cut
        h = {"X-Rems-User": "jepsen"}

        def post(cid, ttl):
            body = {"id": cid, "agent": agent, "action": "restart",
                    "service": "s1", "ttl_ms": ttl, "reason": "scenario"}
            h["X-Rems-Request-Id"] = "scenario-" + cid
            return c.call(f, "POST", "/v1/commands", body=body, headers=h,
                          timeout=10)
        # A first command through f opens its keep-alive connection to the
        # leader.
        r = post("warm-up", 5000)
        self.log("warm-up POST via %s: %s" % (f.name, r.status))
        time.sleep(1.0)
        # The leader drops whatever f sends; t keeps its quorum.
        if not self.net.supports_partition:
            raise RuntimeError("scenario late-command needs network "
                               "namespaces")
        self.net.apply_grudge({leader.name: {f.name}})
        ttl = 3000
        t0 = time.time()
        r = post("late-1", ttl)
        answered = time.time()
        self.log("POST late-1 (ttl %d ms) via %s while %s drops %s: %s %s "
                 "after %.1fs" % (ttl, f.name, leader.name, f.name, r.status
                                  or r.error, r.raw[:120].decode(
                                      "utf-8", "replace"), answered - t0))
        time.sleep(10.0)
        self.net.heal()
        self.log("healed %.1fs after the POST" % (time.time() - t0))
        cmd = None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            b = c.find_leader()
            if b:
                g = c.call(b[0], "GET", "/v1/commands/late-1", timeout=5)
                if g.status == 200 and isinstance(g.body, dict) and \
                        g.body.get("state") != "pending":
                    cmd = g.body
                    break
            time.sleep(0.5)
        self.agents.stop_all()
        start = None
        for rec in self.agents.read_logs().get(agent, []):
            if rec.get("event") == "command_started" and \
                    rec.get("id") == "late-1":
                start = checkers.parse_ts_ms(rec.get("ts"))
        post_ms = int(t0 * 1000)
        bound = post_ms + ttl + self.opts.max_clock_skew_ms + \
            self.opts.send_margin_ms
        res = {"post_status": r.status, "post_error": r.error,
               "post_ms": post_ms, "ttl_ms": ttl, "command": cmd,
               "started_ms": start, "agent": agent, "via": f.name,
               "leader": leader.name}
        if cmd is not None:
            res["issued_after_post_ms"] = cmd.get("issued_ms") - post_ms
        if start is not None:
            res["started_after_post_ms"] = start - post_ms
        self.log("late-1: %s; started %s" % (
            "state %s, issued %s ms after the POST" % (
                cmd.get("state"), res.get("issued_after_post_ms"))
            if cmd else "not in the command log",
            "%d ms after the POST" % (start - post_ms) if start else
            "never"))
        res["valid"] = start is None or start <= bound
        self.result = res


def run_scenario(name, opts, log, run_dir, state, use_netns, remsd):
    n = {"config-stuck": 5, "join-spare": 3, "heal-latency": 3,
         "restart-index": 3, "late-command": 3}[name]
    if name in ("join-spare", "heal-latency", "late-command") and \
            not use_netns:
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
