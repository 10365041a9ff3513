"""Faults: the schedule (a pure function of the seed) and the actions.

Each nemesis kind has its own timeline of windows drawn from
``random.Random("<seed>:<kind>")``: a first quiet period of 2-8 s, then
fault windows of 5-15 s separated by heals of 5-10 s, all ending before the
test's time is up. Kinds run concurrently, so faults overlap. Choices made
while the test runs (which node, which halves) come from
``random.Random(window seed)``, so they depend only on the seed and on what
the cluster looks like at that moment (who leads).

Every window is recorded in the history as a pair of nemesis ``info``
events, ``start-<kind>`` and ``stop-<kind>``, whose value says what was done.
The member nemesis also records ``wipe`` (value: the node) when it deleted a
node's data directory: stale reads of that node may go back from there.

Process-level faults (kill, pause, clock, member) each hold their node for
the whole window, and at most a minority of the nodes are held at once (see
Cluster.claim). Partitions are independent of them.
"""

import os
import random
import threading
import time

from . import net as netmod

NEMESES = ("partition", "kill", "pause", "clock", "member")
CLOCK_MODES = ("bump", "strobe", "rate")
RATE_FACTORS = (0.5, 0.75, 1.5, 2.0)


def _variant(kind, rng):
    if kind == "partition":
        return {"partition": rng.choice(netmod.PARTITION_KINDS)}
    if kind in ("kill", "pause", "member"):
        return {"target": rng.choice(("random", "leader"))}
    if kind == "clock":
        mode = rng.choice(CLOCK_MODES)
        v = {"target": rng.choice(("random", "leader")), "mode": mode}
        if mode == "bump":
            v["offset"] = int(rng.choice((-1, 1)) * rng.uniform(5, 60))
        elif mode == "strobe":
            v["delta"] = int(rng.uniform(5, 60))
        else:
            v["factor"] = rng.choice(RATE_FACTORS)
        return v
    raise ValueError("unknown nemesis %r" % kind)


def make_schedule(seed, nemeses, duration, fault=(5.0, 15.0),
                  heal=(5.0, 10.0), first=(2.0, 8.0)):
    """The fault windows of a test, sorted by start time. Each window is a
    dict: kind, n (its number within the kind), start, stop (seconds since
    the test's start), seed (for choices at run time) and the kind's
    variant fields (partition / target / mode, offset, delta, factor)."""
    out = []
    for kind in nemeses:
        if kind not in NEMESES:
            raise ValueError("unknown nemesis %r" % kind)
        rng = random.Random("%s:%s" % (seed, kind))
        t = rng.uniform(*first)
        k = 0
        while True:
            dur = rng.uniform(*fault)
            if t + dur > duration - 1.0:
                break
            w = {"kind": kind, "n": k, "start": round(t, 3),
                 "stop": round(t + dur, 3), "seed": rng.getrandbits(32)}
            w.update(_variant(kind, rng))
            out.append(w)
            k += 1
            t = t + dur + rng.uniform(*heal)
    out.sort(key=lambda w: (w["start"], w["kind"]))
    return out


class Nemesis:
    """Runs the schedule: one thread per kind."""

    def __init__(self, cluster, net, history, schedule, log, run_dir,
                 skipped=()):
        self.cluster = cluster
        self.net = net
        self.history = history
        self.schedule = schedule
        self.log = log
        self.run_dir = run_dir
        self.skipped = set(skipped)
        self.stop_ev = threading.Event()
        self.threads = []
        self.active = {}       # kind -> text, for the progress line
        self.active_lock = threading.Lock()
        self.stats = {}        # kind -> {"done": n, "skipped": n}
        self.errors = []

    # -- driver ----------------------------------------------------------

    def start(self):
        kinds = sorted(set(w["kind"] for w in self.schedule) - self.skipped)
        for kind in kinds:
            ws = [w for w in self.schedule if w["kind"] == kind]
            self.stats[kind] = {"windows": 0, "skipped": 0}
            t = threading.Thread(target=self._run_kind, args=(kind, ws),
                                 name="nemesis-" + kind, daemon=True)
            self.threads.append(t)
            t.start()

    def stop(self):
        """End early: every kind ends (heals) its current window."""
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=120)

    def _wait_until(self, sec):
        while not self.stop_ev.is_set():
            left = sec - self.history.now() / 1e9
            if left <= 0:
                return True
            self.stop_ev.wait(min(left, 0.5))
        return False

    def _run_kind(self, kind, windows):
        start_fn = getattr(self, "_start_" + kind)
        stop_fn = getattr(self, "_stop_" + kind)
        for w in windows:
            if not self._wait_until(w["start"]):
                return
            if self.history.now() / 1e9 > w["stop"] - 1.0:
                # The previous window overran (a slow rejoin): drop this
                # one rather than run windows back to back.
                self.stats[kind]["overrun"] = \
                    self.stats[kind].get("overrun", 0) + 1
                continue
            rng = random.Random(w["seed"])
            try:
                ctx = start_fn(w, rng)
            except Exception as e:  # noqa: BLE001
                self.errors.append("%s start: %s" % (kind, e))
                self.log("nemesis %s start failed: %s" % (kind, e))
                ctx = None
            if ctx is None:
                self.stats[kind]["skipped"] += 1
                continue
            self.stats[kind]["windows"] += 1
            with self.active_lock:
                self.active[kind] = ctx.get("desc", kind)
            self._wait_until(w["stop"])
            try:
                stop_fn(w, ctx)
            except Exception as e:  # noqa: BLE001
                self.errors.append("%s stop: %s" % (kind, e))
                self.log("nemesis %s stop failed: %s" % (kind, e))
            with self.active_lock:
                self.active.pop(kind, None)

    def describe_active(self):
        with self.active_lock:
            if not self.active:
                return "none"
            return ", ".join("%s(%s)" % (k, v)
                             for k, v in sorted(self.active.items()))

    def _target(self, w):
        return self.cluster.leader() if w.get("target") == "leader" else None

    def _claim(self, kind, w, rng):
        prefer = self._target(w)
        node = self.cluster.claim(kind, rng, prefer=prefer)
        if node is None:
            self.log("nemesis %s: no node free, window skipped" % kind)
            return None, ""
        tag = " (leader)" if prefer is not None and node is prefer else ""
        return node, tag

    # -- partition -------------------------------------------------------

    def _start_partition(self, w, rng):
        leader = self.cluster.leader()
        g = netmod.make_grudge(w["partition"], self.cluster.names, rng,
                               leader=leader.name if leader else None)
        self.net.apply_grudge(g)
        desc = netmod.describe_grudge(w["partition"], g)
        self.history.nemesis("start-partition", desc)
        return {"desc": w["partition"], "grudge": g}

    def _stop_partition(self, w, ctx):
        self.net.heal()
        self.history.nemesis("stop-partition", "healed")

    # -- kill ------------------------------------------------------------

    def _start_kill(self, w, rng):
        node, tag = self._claim("kill", w, rng)
        if node is None:
            return None
        self.cluster.kill(node)
        self.history.nemesis("start-kill", "%s%s killed" % (node.name, tag))
        return {"desc": node.name, "node": node}

    def _stop_kill(self, w, ctx):
        node = ctx["node"]
        try:
            if not node.running:
                self.cluster.start(node)
            self.history.nemesis("stop-kill", "%s restarted" % node.name)
        finally:
            self.cluster.release(node)

    # -- pause -----------------------------------------------------------

    def _start_pause(self, w, rng):
        node, tag = self._claim("pause", w, rng)
        if node is None:
            return None
        self.cluster.pause(node)
        self.history.nemesis("start-pause", "%s%s paused" % (node.name, tag))
        return {"desc": node.name, "node": node}

    def _stop_pause(self, w, ctx):
        node = ctx["node"]
        try:
            self.cluster.resume(node)
            self.history.nemesis("stop-pause", "%s resumed" % node.name)
        finally:
            self.cluster.release(node)

    # -- clock -----------------------------------------------------------

    def _start_clock(self, w, rng):
        node, tag = self._claim("clock", w, rng)
        if node is None:
            return None
        clock = {"mode": w["mode"]}
        tsfile = None
        stop_strobe = threading.Event()
        if w["mode"] == "bump":
            clock["offset"] = w["offset"]
            desc = "%+ds" % w["offset"]
        elif w["mode"] == "strobe":
            clock["delta"] = w["delta"]
            tsfile = os.path.join(self.run_dir, "faketime-%s" % node.name)
            with open(tsfile, "w") as fh:
                fh.write("+%ds\n" % w["delta"])
            desc = "strobe +-%ds every 1s" % w["delta"]
        else:
            clock["factor"] = w["factor"]
            desc = "rate x%g" % w["factor"]
        try:
            self.cluster.stop(node)
            self.cluster.start(node, clock=clock, tsfile=tsfile)
        except Exception:
            self.cluster.release(node)
            raise
        ctx = {"desc": "%s %s" % (node.name, desc), "node": node,
               "stop_strobe": stop_strobe, "strobe": None}
        if tsfile:
            t = threading.Thread(target=self._strobe,
                                 args=(tsfile, w["delta"], stop_strobe),
                                 daemon=True)
            t.start()
            ctx["strobe"] = t
        self.history.nemesis("start-clock", "%s%s restarted under "
                             "libfaketime: %s" % (node.name, tag, desc))
        return ctx

    @staticmethod
    def _strobe(path, delta, stop):
        sign = 1
        while not stop.wait(1.0):
            sign = -sign
            tmp = path + ".tmp"
            with open(tmp, "w") as fh:
                fh.write("%+ds\n" % (sign * delta))
            os.replace(tmp, path)

    def _stop_clock(self, w, ctx):
        node = ctx["node"]
        try:
            ctx["stop_strobe"].set()
            if ctx["strobe"]:
                ctx["strobe"].join(timeout=5)
            self.cluster.stop(node)
            self.cluster.start(node)
            self.history.nemesis("stop-clock", "%s restarted with the real "
                                 "clock" % node.name)
        finally:
            self.cluster.release(node)

    # -- member ----------------------------------------------------------

    def _leader_members(self):
        """(leader node, {id: role}) from the current leader, or (None,
        None)."""
        b = self.cluster.find_leader(timeout=1.0)
        if not b:
            return None, None
        return b[0], self.cluster.members(b[0])

    def _remove(self, node, deadline):
        """DELETE /v1/members/{id} on other nodes until it is gone."""
        c = self.cluster
        rng = random.Random(node.id)
        last = ""
        while time.monotonic() < deadline and not self.stop_ev.is_set():
            others = [x for x in c.live_nodes() if x is not node]
            rng.shuffle(others)
            for via in others[:2]:
                r = c.call(via, "DELETE", "/v1/members/%d" % node.id,
                           timeout=10)
                if r.status == 200 and isinstance(r.body, dict):
                    if r.body.get("removed"):
                        return True, "via %s" % via.name
                    # The leader itself: leadership moved; call again.
                    last = "leadership moved to %s" % r.body.get("leader_id")
                    continue
                if r.status == 404:
                    return True, "via %s (404: already gone)" % via.name
                last = "%s: %s" % (via.name, r.status or r.error)
            time.sleep(1.0)
        # Unknown: ask the leader.
        _, members = self._leader_members()
        if members is not None and node.id not in members:
            return True, "confirmed by the leader"
        return False, last

    def _start_member(self, w, rng):
        c = self.cluster
        leader, members = self._leader_members()
        if members is None:
            self.log("nemesis member: no leader, window skipped")
            return None
        voters = [i for i, role in members.items()
                  if role == "voter" and i in c.by_id]
        if len(voters) - 1 < netmod.majority(len(c.nodes)):
            self.log("nemesis member: %d voters, removing one would leave "
                     "less than a majority of %d; skipped"
                     % (len(voters), len(c.nodes)))
            return None
        prefer = leader if w.get("target") == "leader" else None
        node = c.claim("member", rng, prefer=prefer)
        if node is None:
            self.log("nemesis member: no node free, window skipped")
            return None
        if node.id not in voters:
            c.release(node)
            return None
        tag = " (leader)" if prefer is not None and node is prefer else ""
        ok, how = self._remove(node, time.monotonic() + 25)
        if not ok:
            # The DELETE may still take effect (its entry can be committed
            # by a later leader): keep the node, look again at the end.
            self.history.nemesis("start-member", "remove %s%s: not "
                                 "confirmed (%s)" % (node.name, tag, how))
            return {"desc": "%s removal unknown" % node.name, "node": node,
                    "unconfirmed": True}
        self.history.nemesis("start-member", "%s%s removed %s"
                             % (node.name, tag, how))
        c.stop(node)
        c.wipe(node)
        self.history.nemesis("wipe", node.name)
        return {"desc": "%s removed" % node.name, "node": node}

    def rejoin(self, node, deadline):
        """Start node (stopped, data wiped) with --join via another member,
        and wait until the leader lists it as a voter. True when it is."""
        c = self.cluster
        # Join through a member no other fault holds (a paused or killed
        # one would leave remsd retrying it forever), the leader if it can.
        vias = [x for x in c.live_nodes() if x is not node and not x.fault]
        if not vias:
            vias = [x for x in c.live_nodes() if x is not node] or \
                [x for x in c.nodes if x is not node]
        leader = c.leader()
        via = leader if leader in vias else vias[0]
        node.joined = True
        node.join_via = via.api_address
        if not node.running:
            c.start(node)
        nudged = time.monotonic() + 15
        while time.monotonic() < deadline:
            time.sleep(1.0)
            lnode, members = self._leader_members()
            if members is None:
                continue
            role = members.get(node.id)
            if role == "voter":
                return True, via.name
            if time.monotonic() > nudged:
                nudged = time.monotonic() + 10
                if role is None:
                    body = {"id": node.id, "raft_address": node.raft_address,
                            "api_address": node.api_address, "role": "voter"}
                    r = c.call(lnode, "POST", "/v1/members", body=body,
                               timeout=10)
                else:
                    r = c.call(lnode, "POST", "/v1/members/%d/role" % node.id,
                               body={"role": "voter"}, timeout=10)
                st = self.stats.setdefault("member", {})
                st["nudges"] = st.get("nudges", 0) + 1
                st.setdefault("nudged", []).append(
                    "%.1fs %s was %s" % (self.history.now() / 1e9, node.name,
                                         role or "not a member"))
                msg = ""
                if isinstance(r.body, dict) and \
                        isinstance(r.body.get("error"), dict):
                    msg = " " + str(r.body["error"].get("message", ""))
                self.log("nemesis member: %s is %s; asked %s to make it a "
                         "voter: %s%s" % (node.name, role or "not a member",
                                          lnode.name, r.status or r.error,
                                          msg))
                if r.status == 409:
                    # Evidence for a change that never ends: the leader's
                    # view of the cluster.
                    ls = c.status(lnode, timeout=2.0) or {}
                    st.setdefault("busy", []).append({
                        "time_s": round(self.history.now() / 1e9, 1),
                        "node": node.name, "leader": lnode.name,
                        "answer": msg.strip(),
                        "leader_status": {k: ls.get(k) for k in (
                            "term", "commit_index", "applied_index",
                            "last_index", "members")}})
        return False, via.name

    def _stop_member(self, w, ctx):
        node = ctx["node"]
        if ctx.get("unconfirmed"):
            try:
                _, members = leader_members(self.cluster, 30)
                if members is None or node.id in members:
                    self.history.nemesis("stop-member", "%s left as it was "
                                         "(%s)" % (node.name, "still a member"
                                                   if members else
                                                   "no leader to ask"))
                    return
                # The removal happened after all.
                self.cluster.stop(node)
                self.cluster.wipe(node)
                self.history.nemesis("wipe", node.name)
                ok, via = self.rejoin(node, time.monotonic() + 60)
                self.history.nemesis("stop-member", "%s was removed after "
                                     "all; rejoined via %s%s" % (
                                         node.name, via,
                                         "" if ok else " (not yet a voter)"))
            finally:
                self.cluster.release(node)
            return
        try:
            ok, via = self.rejoin(node, time.monotonic() + 60)
            self.history.nemesis("stop-member", "%s rejoined via %s%s" % (
                node.name, via, "" if ok else " (not yet a voter)"))
        finally:
            self.cluster.release(node)


def leader_members(cluster, timeout):
    """(leader node, {id: role}) from a ready leader, retried until timeout
    seconds passed; (None, None) when no leader answered."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = cluster.wait_for_leader(max(1.0, deadline -
                                             time.monotonic()))
        if leader is None:
            break
        members = cluster.members(leader, timeout=5)
        if members is not None:
            return leader, members
        time.sleep(1.0)
    return None, None


def heal_all(cluster, net, nemesis, log, timeout=90):
    """After the test: no partition, every node running with the real clock,
    every node a voter. Returns a list of what had to be repaired.

    A node is wiped and joined again only when two answers of the leader, a
    few seconds apart, agree that it is not a member, and never more than a
    minority of the nodes: wiping a member would lose its votes and log."""
    repaired = []
    try:
        net.heal()
    except Exception as e:  # noqa: BLE001
        repaired.append("heal failed: %s" % e)
    for node in cluster.nodes:
        if node.paused:
            cluster.resume(node)
            repaired.append("%s resumed" % node.name)
        if node.running and node.clock:
            cluster.stop(node)
            cluster.start(node)
            repaired.append("%s clock restored" % node.name)
        if not node.running:
            cluster.start(node)
            repaired.append("%s started" % node.name)
        cluster.release(node)
    leader, members = leader_members(cluster, timeout)
    if members is None:
        repaired.append("no leader answered GET /v1/members after the heal")
        return repaired
    missing = [x for x in cluster.nodes if members.get(x.id) != "voter"]
    if len(missing) > cluster.max_faulted:
        repaired.append("not repaired: %s not voters per %s (more than a "
                        "minority; membership left as it is)"
                        % (" ".join(x.name for x in missing), leader.name))
        return repaired
    for node in missing:
        role = members.get(node.id)
        if role is None:
            time.sleep(3.0)
            leader, again = leader_members(cluster, 30)
            if again is None:
                repaired.append("%s: membership unknown" % node.name)
                continue
            role = again.get(node.id)
            if role == "voter":
                continue
        log("after the test %s is %s: making it a voter again"
            % (node.name, role or "not a member"))
        if role is None:
            cluster.stop(node)
            cluster.wipe(node)
            nemesis.history.nemesis("wipe", node.name)
        ok, via = nemesis.rejoin(node, time.monotonic() + 60)
        repaired.append("%s (%s) rejoined via %s%s" % (
            node.name, role or "not a member", via,
            "" if ok else " (failed)"))
    return repaired
