"""Unit tests of the harness's pure parts (no cluster, no root needed).

    python3 -m unittest discover -s jepsen/tests
"""

import json
import os
import random
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from remsjepsen import agents, checkers, history, net  # noqa: E402
from remsjepsen import nemesis, nodes  # noqa: E402
from remsjepsen.history import History, Keyword, edn, edn_line  # noqa: E402


def op(process, f, key, value, t_inv, t_done, typ="ok", done_value=None,
       node="n1", **extra):
    """An invoke and its completion (dicts without index)."""
    inv = {"type": "invoke", "process": process, "f": f, "key": key,
           "value": value, "node": node, "time": t_inv}
    done = {"type": typ, "process": process, "f": f, "key": key,
            "value": value if done_value is None else done_value,
            "node": node, "time": t_done}
    done.update(extra)
    if key is None:
        del inv["key"], done["key"]
    return inv, done


def build(evs):
    """Sort by time and number them like History does."""
    evs = sorted(evs, key=lambda e: e["time"])
    out = []
    for i, e in enumerate(evs):
        e = dict(e)
        e["index"] = i
        out.append(e)
    return out


class HistoryWriterTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.jsonl = os.path.join(self.dir.name, "h.jsonl")
        self.edn = os.path.join(self.dir.name, "h.edn")

    def tearDown(self):
        self.dir.cleanup()

    def test_jsonl_fields_index_and_time(self):
        h = History(self.jsonl, self.edn)
        h.append({"type": "invoke", "process": 3, "f": "write", "key": "r1",
                  "value": 4, "node": "n2"})
        h.append({"type": "ok", "process": 3, "f": "write", "key": "r1",
                  "value": 4, "node": "n2"})
        h.nemesis("start-partition", "majority-ring")
        h.append({"type": "fail", "process": 1, "f": "cas", "key": "r1",
                  "value": [4, 5], "node": "n1", "error": "conflict"})
        h.close()
        with open(self.jsonl) as fh:
            lines = fh.read().splitlines()
        evs = [json.loads(x) for x in lines]
        self.assertEqual([e["index"] for e in evs], [0, 1, 2, 3])
        times = [e["time"] for e in evs]
        self.assertEqual(times, sorted(times))
        self.assertTrue(all(isinstance(t, int) and t >= 0 for t in times))
        self.assertEqual(list(evs[0])[:7], ["index", "type", "process",
                                            "time", "f", "key", "value"])
        self.assertEqual(evs[2]["process"], "nemesis")
        self.assertEqual(evs[2]["type"], "info")
        self.assertNotIn("key", evs[2])
        self.assertEqual(evs[3]["value"], [4, 5])
        self.assertEqual(evs[3]["error"], "conflict")
        # Appends after close are ignored, not crashes.
        h.append({"type": "invoke", "process": 9, "f": "read"})
        self.assertEqual(len(h.events), 4)

    def test_time_never_decreases(self):
        h = History()
        h.append({"type": "invoke", "process": 0, "f": "read"}, t=100)
        e = h.append({"type": "ok", "process": 0, "f": "read"}, t=50)
        self.assertEqual(e["time"], 100)

    def test_edn_lines(self):
        h = History(self.jsonl, self.edn, t0_ns=0)
        h.append({"type": "invoke", "process": 3, "f": "write", "key": "r1",
                  "value": 4, "node": "n2"}, t=120034551)
        h.append({"type": "invoke", "process": 4, "f": "cas", "key": "r2",
                  "value": [4, 5], "node": "n1"}, t=120034552)
        h.append({"type": "invoke", "process": 5, "f": "read", "key": "r0",
                  "value": None, "node": "n1"}, t=120034553)
        h.nemesis("start-partition", 'halves: n1 | n2 "x"')
        h.append({"type": "ok", "process": 6, "f": "stale-read",
                  "key": "r0", "value": 2, "node": "n3",
                  "rems_index": 17}, t=120034560)
        h.close()
        with open(self.edn) as fh:
            lines = fh.read().splitlines()
        self.assertEqual(
            lines[0], '{:index 0, :type :invoke, :process 3, '
            ':time 120034551, :f :write, :value [:r1 4], :node "n2"}')
        self.assertIn(":value [:r2 [4 5]]", lines[1])
        self.assertIn(":value [:r0 nil]", lines[2])
        self.assertIn(":process :nemesis", lines[3])
        self.assertIn(":f :start-partition", lines[3])
        self.assertIn(':value "halves: n1 | n2 \\"x\\""', lines[3])
        self.assertIn(":rems-index 17", lines[4])
        self.assertIn(":f :stale-read", lines[4])

    def test_edn_set_values(self):
        line = edn_line({"index": 0, "type": "ok", "process": 1,
                         "time": 5, "f": "read", "value": [3, 1, 2]})
        self.assertIn(":value #{1 2 3}", line)
        line = edn_line({"index": 1, "type": "ok", "process": 1,
                         "time": 6, "f": "add", "value": 7})
        self.assertIn(":value 7", line)

    def test_edn_escaping(self):
        self.assertEqual(edn('a"b'), '"a\\"b"')
        self.assertEqual(edn("a\\b"), '"a\\\\b"')
        self.assertEqual(edn("l1\nl2\tx\ry"), '"l1\\nl2\\tx\\ry"')
        self.assertEqual(edn("\x00\x1f\x7f"), '"\\u0000\\u001f\\u007f"')
        self.assertEqual(edn("caf\u00e9 \u2603"), '"caf\u00e9 \u2603"')
        self.assertEqual(edn(None), "nil")
        self.assertEqual(edn(True), "true")
        self.assertEqual(edn(False), "false")
        self.assertEqual(edn(-12), "-12")
        self.assertEqual(edn(1.5), "1.5")
        self.assertEqual(edn([1, [2, None]]), "[1 [2 nil]]")
        self.assertEqual(edn({Keyword("a"): 1, "b c": 2}),
                         '{:a 1, "b c" 2}')
        self.assertEqual(edn(frozenset([2, 1])), "#{1 2}")

    def test_edn_keyword_fallback(self):
        self.assertEqual(edn(Keyword("start-partition")), ":start-partition")
        self.assertEqual(edn(Keyword("r1")), ":r1")
        # Not valid keyword names: written as strings.
        self.assertEqual(edn(Keyword("1abc")), '"1abc"')
        self.assertEqual(edn(Keyword("a b")), '"a b"')
        self.assertEqual(edn(Keyword('x"y')), '"x\\"y"')
        line = edn_line({"index": 0, "type": "invoke", "process": 1,
                         "time": 0, "f": "write", "key": "has space",
                         "value": 1})
        self.assertIn(':value ["has space" 1]', line)

    def test_pair_ops(self):
        a_inv, a_ok = op(1, "write", "r1", 3, 10, 20)
        b_inv, b_info = op(2, "write", "r1", 4, 11, 30, typ="info")
        c_inv = dict(op(3, "read", "r1", None, 40, 50)[0])
        evs = build([a_inv, a_ok, b_inv, b_info, c_inv,
                     {"type": "info", "process": "nemesis", "time": 15,
                      "f": "start-kill", "value": "n1"}])
        ops = history.pair_ops(evs)
        self.assertEqual([o["type"] for o in ops], ["ok", "info", None])
        counts = checkers.op_counts(evs)
        self.assertEqual(counts["invoked"], 3)
        self.assertEqual(counts["incomplete"], 1)
        self.assertEqual(counts["by_f"]["write"]["info"], 1)


class SetCheckerTest(unittest.TestCase):
    def history(self):
        evs = []
        t = 0
        for elem, typ in ((1, "ok"), (2, "ok"), (3, "fail"), (4, "info"),
                          (5, "ok")):
            inv, done = op(elem, "add", None, elem, t, t + 5, typ=typ)
            evs += [inv, done]
            t += 10
        return build(evs)

    def test_valid(self):
        final = {"linearizable": {"n1": [1, 2, 5], "n2": [1, 2, 4, 5]},
                 "stale": {"n1": [1, 2, 5], "n2": [5, 2, 1, 4]}}
        r = checkers.check_set(self.history(), final)
        self.assertIs(r["valid"], True)
        self.assertEqual(r["acknowledged"], 3)
        self.assertEqual(r["failed"], 1)
        self.assertEqual(r["indeterminate"], 1)
        self.assertEqual(r["reads"]["n2 linearizable"]
                         ["indeterminate_present"], 1)

    def test_lost_write(self):
        final = {"linearizable": {"n1": [1, 2, 5], "n2": [1, 5]},
                 "stale": {"n1": [1, 2, 5], "n2": [1, 2, 5]}}
        r = checkers.check_set(self.history(), final)
        self.assertIs(r["valid"], False)
        self.assertEqual(r["lost"], {"n2 linearizable": [2]})

    def test_never_attempted(self):
        final = {"linearizable": {"n1": [1, 2, 5, 99]}, "stale": {}}
        r = checkers.check_set(self.history(), final)
        self.assertIs(r["valid"], False)
        self.assertEqual(r["unexpected"], {"n1 linearizable": [99]})

    def test_failed_add_present(self):
        final = {"linearizable": {"n1": [1, 2, 3, 5]}, "stale": {}}
        r = checkers.check_set(self.history(), final)
        self.assertIs(r["valid"], False)
        self.assertEqual(r["failed_present"], {"n1 linearizable": [3]})

    def test_duplicate(self):
        final = {"linearizable": {"n1": [1, 2, 2, 5]}, "stale": {}}
        r = checkers.check_set(self.history(), final)
        self.assertIs(r["valid"], False)

    def test_missing_final_read_is_unknown(self):
        final = {"linearizable": {"n1": [1, 2, 5], "n2": None},
                 "stale": {"n1": [1, 2, 5]}}
        r = checkers.check_set(self.history(), final)
        self.assertEqual(r["valid"], "unknown")
        self.assertEqual(r["missing_reads"], ["n2 linearizable"])


def log_line(node, role, term, leader, event="raft_state"):
    return json.dumps({"ts": "2026-11-22T04:45:43.650Z", "level": "info",
                       "node": str(node), "event": event, "role": role,
                       "term": term, "leader": leader, "commit_index": 1})


class LeaderPerTermTest(unittest.TestCase):
    def test_valid(self):
        logs = {
            "n1": [log_line(1, "follower", 1, 0), log_line(1, "leader", 2, 1),
                   log_line(1, "leader", 2, 1), "not json",
                   '{"truncated": ', log_line(1, "follower", 3, 2)],
            "n2": [log_line(2, "candidate", 3, 0), log_line(2, "leader", 3, 2),
                   log_line(2, "follower", 4, 3)],
            "n3": [log_line(3, "leader", 4, 3),
                   log_line(3, "leader", 4, 3, event="leader_ready")],
        }
        r = checkers.check_leaders(logs)
        self.assertIs(r["valid"], True)
        self.assertEqual(r["terms_with_leader"], 3)
        self.assertEqual(r["max_term"], 4)

    def test_two_leaders_in_one_term(self):
        logs = {"n1": [log_line(1, "leader", 5, 1)],
                "n2": [log_line(2, "follower", 5, 1)],
                "n3": [log_line(3, "leader", 5, 3), log_line(3, "leader", 6,
                                                            3)]}
        r = checkers.check_leaders(logs)
        self.assertIs(r["valid"], False)
        self.assertEqual(len(r["violations"]), 1)
        self.assertEqual(r["violations"][0]["term"], 5)
        self.assertEqual(r["violations"][0]["leaders"], ["1", "3"])

    def test_status_claims(self):
        logs = {"n1": [log_line(1, "leader", 5, 1)]}
        r = checkers.check_leaders(logs, [(5, "1"), (6, "2")])
        self.assertIs(r["valid"], True)
        self.assertEqual(r["terms_with_leader"], 2)
        r = checkers.check_leaders(logs, [(5, "2")])
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"][0]["leaders"], ["1", "2"])

    def test_reads_node_logs(self):
        with tempfile.TemporaryDirectory() as d:
            with open(os.path.join(d, "n1.log"), "w") as fh:
                fh.write(log_line(1, "leader", 2, 1) + "\n")
            logs = checkers.read_logs(d, ["n1", "n2"])
            self.assertEqual(len(logs["n1"]), 1)
            self.assertEqual(logs["n2"], [])


class StaleReadCheckerTest(unittest.TestCase):
    def read(self, p, node, t0, t1, idx):
        return list(op(p, "stale-read", "r1", None, t0, t1, done_value=1,
                       node=node, rems_index=idx))

    def test_monotonic(self):
        evs = []
        for i, (t, idx) in enumerate(((0, 5), (20, 5), (40, 9), (60, 12))):
            evs += self.read(i, "n1", t, t + 10, idx)
        evs += self.read(9, "n2", 0, 10, 3)
        r = checkers.check_stale_reads(build(evs))
        self.assertIs(r["valid"], True)
        self.assertEqual(r["stale_reads"], 5)

    def test_goes_back(self):
        evs = []
        evs += self.read(1, "n1", 0, 10, 50)
        evs += self.read(2, "n1", 20, 30, 7)
        r = checkers.check_stale_reads(build(evs))
        self.assertIs(r["valid"], False)
        v = r["violations"][0]
        self.assertEqual(v["node"], "n1")
        self.assertEqual(v["earlier"]["rems_index"], 50)
        self.assertEqual(v["later"]["rems_index"], 7)

    def test_other_nodes_are_independent(self):
        evs = self.read(1, "n1", 0, 10, 50) + self.read(2, "n2", 20, 30, 7)
        self.assertIs(checkers.check_stale_reads(build(evs))["valid"], True)

    def test_concurrent_reads_may_disagree(self):
        # Overlapping reads: either order is fine.
        evs = self.read(1, "n1", 0, 30, 50) + self.read(2, "n1", 10, 40, 7)
        self.assertIs(checkers.check_stale_reads(build(evs))["valid"], True)

    def test_wipe_resets(self):
        evs = self.read(1, "n1", 0, 10, 50)
        evs.append({"type": "info", "process": "nemesis", "time": 15,
                    "f": "wipe", "value": "n1"})
        evs += self.read(2, "n1", 20, 30, 3)
        evs += self.read(3, "n1", 40, 50, 4)
        r = checkers.check_stale_reads(build(evs))
        self.assertIs(r["valid"], True)
        self.assertEqual(r["wipes"], {"n1": 1})
        # ... but not within the new epoch.
        evs += self.read(4, "n1", 60, 70, 2)
        self.assertIs(checkers.check_stale_reads(build(evs))["valid"], False)

    def test_failed_reads_ignored(self):
        evs = self.read(1, "n1", 0, 10, 50)
        inv, done = op(2, "stale-read", "r1", None, 20, 30, typ="fail",
                       node="n1", error="connect: connection-refused")
        evs += [inv, done]
        self.assertIs(checkers.check_stale_reads(build(evs))["valid"], True)


class ScheduleTest(unittest.TestCase):
    ALL = list(nemesis.NEMESES)

    def test_deterministic(self):
        a = nemesis.make_schedule(42, self.ALL, 300)
        b = nemesis.make_schedule(42, self.ALL, 300)
        self.assertEqual(a, b)
        self.assertEqual(json.dumps(a), json.dumps(b))
        c = nemesis.make_schedule(43, self.ALL, 300)
        self.assertNotEqual(a, c)

    def test_kind_independent_of_others(self):
        # Adding a nemesis does not change another kind's windows.
        a = [w for w in nemesis.make_schedule(7, ["kill"], 300)]
        b = [w for w in nemesis.make_schedule(7, ["kill", "partition"], 300)
             if w["kind"] == "kill"]
        self.assertEqual(a, b)

    def test_windows(self):
        for seed in range(20):
            s = nemesis.make_schedule(seed, self.ALL, 120)
            self.assertTrue(s)
            self.assertEqual(s, sorted(s, key=lambda w: (w["start"],
                                                         w["kind"])))
            for kind in self.ALL:
                ws = [w for w in s if w["kind"] == kind]
                self.assertTrue(ws, kind)
                self.assertGreaterEqual(ws[0]["start"], 2.0)
                for w in ws:
                    self.assertGreaterEqual(w["stop"] - w["start"], 5.0 - 1e-3)
                    self.assertLessEqual(w["stop"] - w["start"], 15.0 + 1e-3)
                    self.assertLessEqual(w["stop"], 120 - 1.0)
                for a, b in zip(ws, ws[1:]):
                    self.assertGreaterEqual(b["start"] - a["stop"], 5.0 - 1e-3)
                    self.assertLessEqual(b["start"] - a["stop"], 10.0 + 1e-3)
            for w in s:
                if w["kind"] == "partition":
                    self.assertIn(w["partition"], net.PARTITION_KINDS)
                if w["kind"] == "clock":
                    self.assertIn(w["mode"], nemesis.CLOCK_MODES)
                    if w["mode"] == "bump":
                        self.assertTrue(5 <= abs(w["offset"]) <= 60)
                if w["kind"] in ("kill", "pause", "member", "clock"):
                    self.assertIn(w["target"], ("random", "leader"))

    def test_short_test_has_no_windows(self):
        self.assertEqual(nemesis.make_schedule(1, ["kill"], 5), [])

    def test_unknown_nemesis(self):
        with self.assertRaises(ValueError):
            nemesis.make_schedule(1, ["bogus"], 60)

    def test_runtime_choices_follow_window_seed(self):
        s = nemesis.make_schedule(5, ["partition"], 200)
        nodes = ["n1", "n2", "n3", "n4", "n5"]
        g1 = [net.make_grudge(w["partition"], nodes, random.Random(w["seed"]),
                              leader="n2") for w in s]
        g2 = [net.make_grudge(w["partition"], nodes, random.Random(w["seed"]),
                              leader="n2") for w in s]
        self.assertEqual(g1, g2)


def views(g):
    """node -> the nodes it hears from (itself included)."""
    return {n: frozenset(m for m in g if m not in g[n]) for n in g}


def symmetric(g):
    return all((b in g[a]) == (a in g[b]) for a in g for b in g)


class GrudgeTest(unittest.TestCase):
    SIZES = (3, 4, 5, 7, 9)

    def nodes(self, n):
        return ["n%d" % i for i in range(1, n + 1)]

    def test_halves(self):
        for n in self.SIZES:
            for seed in range(10):
                g = net.make_grudge("halves", self.nodes(n),
                                    random.Random(seed))
                self.assertEqual(set(g), set(self.nodes(n)))
                self.assertTrue(symmetric(g))
                comps = set(views(g).values())
                self.assertEqual(len(comps), 2)
                self.assertEqual(sorted(len(c) for c in comps),
                                 [n // 2, n - n // 2])
                for node, v in views(g).items():
                    self.assertIn(node, v)
                    self.assertEqual(g[node], set(self.nodes(n)) - v)

    def test_isolate_leader(self):
        for n in self.SIZES:
            g = net.make_grudge("isolate-leader", self.nodes(n),
                                random.Random(1), leader="n2")
            self.assertEqual(g["n2"], set(self.nodes(n)) - {"n2"})
            for m in self.nodes(n):
                if m != "n2":
                    self.assertEqual(g[m], {"n2"})
            self.assertTrue(symmetric(g))
        # No leader known: some node is isolated.
        g = net.make_grudge("isolate-leader", self.nodes(5),
                            random.Random(1), leader=None)
        alone = [m for m in g if len(g[m]) == 4]
        self.assertEqual(len(alone), 1)

    def test_majority_ring(self):
        for n in self.SIZES:
            for seed in range(10):
                g = net.make_grudge("majority-ring", self.nodes(n),
                                    random.Random(seed))
                v = views(g)
                m = net.majority(n)
                for node in g:
                    self.assertIn(node, v[node])
                    self.assertEqual(len(v[node]), m)
                # No two nodes see the same majority.
                self.assertEqual(len(set(v.values())), n)
                if m % 2 == 1:
                    # Windows centred on each node: links are two-way.
                    self.assertTrue(symmetric(g))
        # 5 nodes: each node sees exactly its two ring neighbours.
        g = net.make_grudge("majority-ring", self.nodes(5), random.Random(3))
        for node, v in views(g).items():
            self.assertEqual(len(v - {node}), 2)

    def test_bridge(self):
        for n in self.SIZES:
            for seed in range(10):
                g = net.make_grudge("bridge", self.nodes(n),
                                    random.Random(seed))
                self.assertTrue(symmetric(g))
                bridges = [m for m in g if not g[m]]
                self.assertEqual(len(bridges), 1)
                b = bridges[0]
                others = [m for m in g if m != b]
                # The others split in two sides that cannot talk.
                sides = set(views(g)[m] - {b} for m in others)
                self.assertEqual(len(sides), 2)
                s1, s2 = sorted(sides, key=len)
                self.assertEqual(sorted([len(s1), len(s2)]),
                                 sorted([n // 2, n - n // 2 - 1]))
                self.assertFalse(s1 & s2)
                self.assertEqual(s1 | s2, set(others))
                for m in others:
                    self.assertNotIn(b, g[m])

    def test_unknown_kind(self):
        with self.assertRaises(ValueError):
            net.make_grudge("bogus", ["n1"], random.Random(1))

    def test_describe(self):
        g = net.grudge_isolate(["n1", "n2", "n3"], "n1")
        self.assertEqual(net.describe_grudge("isolate-leader", g),
                         "isolate-leader: n1 | n2 n3")
        g = net.grudge_majority_ring(["n1", "n2", "n3", "n4", "n5"],
                                     random.Random(1))
        text = net.describe_grudge("majority-ring", g)
        self.assertTrue(text.startswith("majority-ring: n1 sees "))

    def test_nft_rules_never_drop_the_bridge(self):
        class State:
            def update(self, **kw):
                pass
        nw = net.NetnsNetwork(7, ["n1", "n2", "n3"], State())
        applied = []
        nw._apply_node = lambda name, ips: applied.append(
            (name, sorted(set(ips) - {nw.gateway})))
        g = net.make_grudge("halves", nw.names, random.Random(2))
        nw.apply_grudge(g)
        for name, ips in applied:
            self.assertNotIn("10.77.7.1", ips)
            self.assertEqual(ips, sorted(nw.ip[m] for m in g[name]))
        script = nw._nft_script({"10.77.7.12", "10.77.7.13"})
        self.assertIn("ip saddr { 10.77.7.12, 10.77.7.13 } drop", script)
        self.assertIn("delete table inet rjepsen", script)
        heal = nw._nft_script(set())
        self.assertNotIn("chain", heal)
        self.assertEqual(nw.ns["n2"], "rj7n2")
        self.assertEqual(nw.ip["n3"], "10.77.7.13")


class FakeNode:
    def __init__(self, i):
        self.id = i
        self.name = "n%d" % i
        self.paused = False
        self.running = True
        self.clock = None


class FakeCluster:
    """Just enough of nodes.Cluster for nemesis.heal_all."""

    def __init__(self, n, members):
        self.nodes = [FakeNode(i) for i in range(1, n + 1)]
        self.max_faulted = (n - 1) // 2
        self._members = members
        self.wiped = []
        self.stopped = []

    def resume(self, node):
        node.paused = False

    def stop(self, node):
        self.stopped.append(node.name)
        node.running = False

    def start(self, node, clock=None, tsfile=None):
        node.running = True
        node.clock = clock

    def release(self, node):
        pass

    def wait_for_leader(self, timeout):
        return self.nodes[0]

    def members(self, leader, timeout=3.0):
        return self._members

    def wipe(self, node):
        self.wiped.append(node.name)


class FakeNet:
    def heal(self):
        pass


class FakeNemesis:
    def __init__(self):
        self.history = History()
        self.rejoined = []

    def rejoin(self, node, deadline):
        self.rejoined.append(node.name)
        return True, "n1"


class HealAllTest(unittest.TestCase):
    def setUp(self):
        self.sleep = nemesis.time.sleep
        nemesis.time.sleep = lambda s: None

    def tearDown(self):
        nemesis.time.sleep = self.sleep

    def test_wipes_only_a_confirmed_non_member(self):
        c = FakeCluster(5, {1: "voter", 2: "voter", 3: "voter",
                            4: "spare"})
        n = FakeNemesis()
        out = nemesis.heal_all(c, FakeNet(), n, lambda m: None)
        self.assertEqual(c.wiped, ["n5"])
        self.assertEqual(n.rejoined, ["n4", "n5"])
        self.assertEqual(len(out), 2)
        self.assertEqual([e["value"] for e in n.history.events
                          if e["f"] == "wipe"], ["n5"])

    def test_never_wipes_a_majority(self):
        # A leader that answers with a near-empty table must not make the
        # harness wipe most of the cluster.
        c = FakeCluster(5, {1: "voter"})
        n = FakeNemesis()
        out = nemesis.heal_all(c, FakeNet(), n, lambda m: None)
        self.assertEqual(c.wiped, [])
        self.assertEqual(n.rejoined, [])
        self.assertIn("not repaired", out[0])

    def test_no_answer_repairs_nothing(self):
        c = FakeCluster(3, None)
        c.members = lambda leader, timeout=3.0: None
        c.wait_for_leader = lambda timeout: None
        n = FakeNemesis()
        out = nemesis.heal_all(c, FakeNet(), n, lambda m: None)
        self.assertEqual(c.wiped, [])
        self.assertIn("no leader answered", out[-1])

    def test_restarts_stopped_and_restores_clocks(self):
        c = FakeCluster(3, {1: "voter", 2: "voter", 3: "voter"})
        c.nodes[1].running = False
        c.nodes[2].clock = {"mode": "bump", "offset": 5}
        c.nodes[0].paused = True
        out = nemesis.heal_all(c, FakeNet(), FakeNemesis(), lambda m: None)
        self.assertTrue(all(x.running and not x.clock and not x.paused
                            for x in c.nodes))
        self.assertEqual(sorted(out), ["n1 resumed", "n2 started",
                                       "n3 clock restored"])


class MiscTest(unittest.TestCase):
    def test_combine(self):
        self.assertIs(checkers.combine({"a": {"valid": True},
                                        "b": {"valid": "skipped"}}), True)
        self.assertEqual(checkers.combine({"a": {"valid": True},
                                           "b": {"valid": "unknown"}}),
                         "unknown")
        self.assertIs(checkers.combine({"a": {"valid": False},
                                        "b": {"valid": "unknown"}}), False)

    def test_faketime_env(self):
        if nodes.faketime_lib() is None:
            self.skipTest("libfaketime not installed")
        e = nodes.faketime_env({"mode": "bump", "offset": -30})
        self.assertEqual(e["FAKETIME"], "-30s")
        self.assertEqual(e["FAKETIME_DONT_FAKE_MONOTONIC"], "1")
        e = nodes.faketime_env({"mode": "strobe", "delta": 20}, "/tmp/x")
        self.assertEqual(e["FAKETIME_TIMESTAMP_FILE"], "/tmp/x")
        self.assertNotIn("FAKETIME", e)
        e = nodes.faketime_env({"mode": "rate", "factor": 2.0})
        self.assertEqual(e["FAKETIME"], "+0 x2")
        self.assertNotIn("FAKETIME_DONT_FAKE_MONOTONIC", e)

    def test_lincheck_missing_is_skipped(self):
        r = checkers.check_linearizable("/nonexistent/rems-lincheck",
                                        "/tmp/h.jsonl", "/tmp/l.json", 10)
        self.assertEqual(r["valid"], "skipped")


# ---------------------------------------------------------------------------
# The commands checker

BASE_MS = 1795330000000          # wall clock of history time 0
MS = 1000000                     # history time is in ns


def ts(ms):
    """A log timestamp for wall-clock ms."""
    import datetime
    d = datetime.datetime.fromtimestamp(ms / 1000.0,
                                        datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def post(process, cid, agent, t_ms, done_ms, typ="ok", ttl=4000,
         action="restart", service="s1", error=None):
    """A command POST invoked at t_ms, completed at done_ms (history times
    in ms; the invoke's wall clock is BASE_MS + t_ms)."""
    v = {"id": cid, "agent": agent, "action": action, "service": service,
         "ttl_ms": ttl}
    inv = {"type": "invoke", "process": process, "f": "command", "value": v,
           "node": "n1", "time": t_ms * MS, "wall_ms": BASE_MS + t_ms}
    done = {"type": typ, "process": process, "f": "command", "value": v,
            "node": "n1", "time": done_ms * MS}
    if error:
        done["error"] = error
    return [inv, done]


def logged(cid, agent, state, t_ms, ttl=4000, term=2, result=None):
    """A command of the final log, issued at history time t_ms."""
    return {"id": cid, "agent": agent, "action": "restart", "service": "s1",
            "state": state, "result": result, "term": term, "ttl_ms": ttl,
            "issued_ms": BASE_MS + t_ms, "deadline_ms": BASE_MS + t_ms + ttl}


def started(cid, t_ms, term=2, ttl_rem=3000, elapsed=5):
    return {"ts": ts(BASE_MS + t_ms), "level": "info", "node": "a1",
            "event": "command_started", "id": cid, "term": term,
            "ttl_remaining_ms": ttl_rem, "elapsed_ms": elapsed,
            "action": "restart", "service": "s1"}


def received(cid, t_ms, term=2):
    return {"ts": ts(BASE_MS + t_ms), "event": "command_received",
            "id": cid, "term": term, "ttl_remaining_ms": 3000}


def agent_started(t_ms):
    return {"ts": ts(BASE_MS + t_ms), "event": "agent_started"}


class CommandsCheckerTest(unittest.TestCase):
    """A valid run, then one violation of each kind on top of it."""

    def setUp(self):
        evs = []
        evs += post(0, "c1", "a1", 1000, 1050)             # acked
        evs += post(1, "c2", "a2", 1100, 1150)             # expired
        evs += post(2, "c3", "a1", 1200, 1250)             # nacked
        evs += post(3, "c4", "a1", 1300, 4300, typ="info",
                    error="timeout")                       # acked, dup
        evs += post(4, "c5", "a1", 1400, 1410, typ="fail",
                    error="503 no_leader")                 # never proposed
        evs += post(8, "c6", "a2", 1500, 4500, typ="info",
                    error="timeout")                       # never proposed
        self.events = evs
        self.log = [
            logged("c1", "a1", "acked", 1010, result={}),
            logged("c2", "a2", "expired", 1110),
            logged("c3", "a1", "nacked", 1210,
                   result={"reason": "failed", "message": "superseded"}),
            logged("c4", "a1", "acked", 1310, term=3,
                   result={"duplicate": True}),
        ]
        self.agents = {
            "a1": [agent_started(0),
                   received("c1", 1020), started("c1", 1025),
                   received("c3", 1220), started("c3", 1222),
                   received("c4", 1320, term=3), started("c4", 1321, term=3),
                   agent_started(2000),
                   received("c4", 2100, term=3)],
            "a2": [agent_started(0)],
        }

    def check(self, events=None, log=None, agents=None):
        return checkers.check_commands(
            build(self.events if events is None else events),
            self.log if log is None else log,
            self.agents if agents is None else agents,
            skew_ms=500, margin_ms=100, allowance_ms=250,
            wall_base_ns=BASE_MS * MS)

    def test_valid(self):
        r = self.check()
        self.assertIs(r["valid"], True, r["violation_examples"])
        self.assertEqual(r["posted"], 6)
        self.assertEqual(r["post_outcomes"], {"ok": 3, "fail": 1, "info": 2,
                                              "incomplete": 0})
        self.assertEqual(r["started"], 3)
        self.assertEqual(r["log"]["states"], {"acked": 2, "expired": 1,
                                              "nacked": 1})
        self.assertEqual(r["indeterminate_in_log"], 1)
        self.assertEqual(r["counted"]["started_then_nacked"], 1)
        self.assertEqual(r["counted"]["acked_not_started_duplicate"], 0)
        self.assertEqual(r["agents"]["a1"]["agent_starts"], 2)
        self.assertEqual(sum(r["violations"].values()), 0)

    def test_double_start(self):
        self.agents["a1"].append(started("c4", 2101, term=3))
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["4_double_start"], 1)
        v = r["violation_examples"]["4_double_start"][0]
        self.assertEqual((v["agent"], v["id"], v["starts"]), ("a1", "c4", 2))

    def test_late_start(self):
        # c1: invoked at 1000 ms with ttl 4000: the bound is 1000 + 4000 +
        # 500 + 100 + 250 = 5850 ms.
        self.agents["a1"][2] = started("c1", 5851)
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["5_late_vs_invoke"], 1)
        self.assertEqual(r["violations"]["5_late_vs_deadline"], 1)
        self.assertEqual(
            r["violation_examples"]["5_late_vs_invoke"][0]["late_by_ms"], 1)
        self.agents["a1"][2] = started("c1", 5849)
        r = self.check()
        self.assertEqual(r["violations"]["5_late_vs_invoke"], 0)
        # ... but after the leader's deadline_ms (1010 + 4000 + 250).
        self.assertEqual(r["violations"]["5_late_vs_deadline"], 1)

    def test_late_start_excused_by_clock_window(self):
        self.agents["a1"][2] = started("c1", 9000)
        evs = self.events + [
            {"type": "info", "process": "nemesis", "time": 15000 * MS,
             "f": "start-clock", "value": "n2 restarted under libfaketime"},
            {"type": "info", "process": "nemesis", "time": 30000 * MS,
             "f": "stop-clock", "value": "n2 restarted"}]
        # The window (widened 10 s before its start event: from 5000 ms)
        # meets [invoke, start] = [1000, 9000] ms.
        r = self.check(events=evs)
        self.assertIs(r["valid"], True, r["violation_examples"])
        self.assertEqual(r["counted"]["5_excused_by_clock"], 1)
        self.assertEqual(r["counted"]["5_deadline_skewed_by_clock"], 1)
        self.assertEqual(r["excused_by_clock_max_late_ms"], 3150)
        # A window that ended long before does not excuse it.
        for e in evs[-2:]:
            e["time"] += 100000 * MS
        self.assertIs(self.check(events=evs)["valid"], False)

    def test_late_proposal_is_counted(self):
        # c4's POST timed out; the leader proposed it 5 s after the invoke
        # (its deadline runs from there) and it ran in time for that.
        self.log[3] = logged("c4", "a1", "acked", 6300, term=3,
                             result={"duplicate": True})
        self.agents["a1"][6] = started("c4", 9000, term=3)
        r = self.check()
        self.assertIs(r["valid"], True, r["violation_examples"])
        self.assertEqual(r["counted"]["5_late_proposal"], 1)

    def test_agent_rule(self):
        self.agents["a1"][2] = started("c1", 1025, ttl_rem=300, elapsed=300)
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["5_agent_rule"], 1)

    def test_lower_term(self):
        self.agents["a1"][6] = started("c4", 1321, term=1)
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["6_term_decreased"], 1)
        v = r["violation_examples"]["6_term_decreased"][0]
        self.assertEqual((v["term"], v["after_term"]), (1, 2))

    def test_lower_term_across_agent_restart(self):
        self.agents["a1"].append(started("c9", 3000, term=2))
        self.log.append(logged("c9", "a1", "acked", 2900, term=2))
        self.events += post(5, "c9", "a1", 2900, 2950)
        r = self.check()
        self.assertEqual(r["violations"]["6_term_decreased"], 1)

    def test_started_but_uncommitted(self):
        self.events += post(5, "c7", "a1", 1600, 4600, typ="info")
        self.agents["a1"] += [received("c7", 1700), started("c7", 1701)]
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["7_uncommitted_started"], 1)
        self.assertEqual(r["violations"]["7_uncommitted_received"], 1)

    def test_started_by_another_agent(self):
        self.agents["a2"] += [received("c1", 1120), started("c1", 1121)]
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["7_wrong_agent"], 2)

    def test_pending_at_end(self):
        self.log[1] = logged("c2", "a2", "pending", 1110)
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["7_pending_at_end"], 1)

    def test_unknown_state(self):
        self.log[1] = logged("c2", "a2", "done", 1110)
        self.assertEqual(self.check()["violations"]["7_bad_state"], 1)

    def test_lost_acknowledged_post(self):
        del self.log[0]
        self.agents["a1"] = [r for r in self.agents["a1"]
                             if r.get("id") != "c1"]
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["7_lost_acknowledged"], 1)

    def test_failed_post_present(self):
        self.log.append(logged("c5", "a1", "expired", 1405))
        r = self.check()
        self.assertIs(r["valid"], False)
        self.assertEqual(r["violations"]["7_failed_present"], 1)

    def test_never_posted(self):
        self.log.append(logged("zz", "a1", "expired", 1405))
        self.assertEqual(self.check()["violations"]["7_never_posted"], 1)

    def test_acked_without_start_is_counted(self):
        self.agents["a1"] = [r for r in self.agents["a1"]
                             if r.get("id") != "c4"]
        r = self.check()
        self.assertIs(r["valid"], True)
        self.assertEqual(r["counted"]["acked_not_started_duplicate"], 1)

    def test_log_unreadable_is_unknown(self):
        r = checkers.check_commands(build(self.events), None, self.agents,
                                    wall_base_ns=BASE_MS * MS)
        self.assertEqual(r["valid"], "unknown")

    def test_accept_everything_fails(self):
        """Every violation above, at once: a checker that accepts all
        would pass this history."""
        self.agents["a1"].append(started("c4", 2101, term=1))
        self.log[1] = logged("c2", "a2", "pending", 1110)
        r = self.check()
        self.assertIs(r["valid"], False)
        for k in ("4_double_start", "6_term_decreased", "7_pending_at_end"):
            self.assertGreater(r["violations"][k], 0, k)

    def test_parse_ts(self):
        self.assertEqual(checkers.parse_ts_ms(ts(BASE_MS + 123)),
                         BASE_MS + 123)
        self.assertEqual(checkers.parse_ts_ms("2026-11-22T04:45:43.650Z")
                         % 1000, 650)
        self.assertIsNone(checkers.parse_ts_ms("yesterday"))
        self.assertIsNone(checkers.parse_ts_ms(None))

    def test_clock_windows(self):
        evs = [{"type": "info", "process": "nemesis", "time": 5000 * MS,
                "f": "start-clock", "value": "n1 +30s"},
               {"type": "info", "process": "nemesis", "time": 9000 * MS,
                "f": "stop-clock", "value": "n1 restored"},
               {"type": "info", "process": "nemesis", "time": 20000 * MS,
                "f": "start-clock", "value": "n2 rate x2"},
               {"type": "ok", "process": 1, "time": 25000 * MS, "f": "x"}]
        w = checkers.clock_windows(evs, BASE_MS * MS, lead_s=10, tail_s=1)
        self.assertEqual(len(w), 2)
        self.assertEqual(w[0][:2], (BASE_MS - 5000, BASE_MS + 10000))
        self.assertEqual(w[1][:2], (BASE_MS + 10000, BASE_MS + 26000))


class AgentConfigTest(unittest.TestCase):
    def test_yaml(self):
        y = agents.agent_yaml("a2", ["10.77.1.11:7201", "10.77.1.12:7201"],
                              "/run/certs", "/run/data/a2", ["s1", "s2"])
        self.assertIn("id: a2\n", y)
        self.assertIn('  - "10.77.1.12:7201"\n', y)
        self.assertIn('  cert: "/run/certs/a2.pem"\n', y)
        self.assertIn("  server_name: node1.rems.test\n", y)
        self.assertEqual(y.count("autostart: false"), 2)
        self.assertIn('data_dir: "/run/data/a2"\n', y)

    def test_agent_ports(self):
        n = net.LocalNetwork(1, ["n1", "n2"], None)
        ports = [n.raft_port("n1"), n.api_port("n1"), n.agent_port("n1"),
                 n.raft_port("n2"), n.api_port("n2"), n.agent_port("n2")]
        self.assertEqual(len(set(ports)), 6)
        self.assertEqual(net.NetnsNetwork.AGENT_PORT, 7201)


class CommandClientTest(unittest.TestCase):
    """How a POST /v1/commands answer is recorded."""

    class Opts:
        seed = 1
        concurrency = 2
        rate = 0
        timeout = 3.0
        command_actions = "start,stop,restart"
        command_ttl = "2000,8000"

    class Cluster:
        def __init__(self, answers):
            self.nodes = [FakeNode(1), FakeNode(2)]
            self.answers = list(answers)
            self.bodies = []

        def call(self, node, method, path, body=None, headers=None,
                 timeout=3.0):
            self.bodies.append((method, path, body, headers))
            return self.answers.pop(0)

        def log(self, msg):
            pass

    def run_ops(self, answers):
        import threading
        from remsjepsen import api, workloads
        resp = []
        for a in answers:
            if isinstance(a, tuple):
                st, body = a
                resp.append(api.Response(status=st, body=body,
                                         raw=json.dumps(body).encode()))
            else:
                resp.append(api.Response(error=a[1], phase=a[0]) if
                            isinstance(a, list) else a)
        c = self.Cluster(resp)
        h = History()
        counters = workloads.Counters()
        cl = workloads.CommandClient(0, c, h, self.Opts(), threading.Event(),
                                     counters, "1-1", agents=["a1", "a2"],
                                     services=["s1"])
        for _ in answers:
            cl.step()
        return c, h, counters

    def test_outcomes(self):
        c, h, counters = self.run_ops([
            (201, {"id": "x", "term": 3, "issued_ms": 5,
                   "deadline_ms": 2005}),
            (503, {"error": {"code": "no_leader"}}),
            ["connect", "connection-refused"],
            (503, {"error": {"code": "unavailable"}}),
            ["request", "timeout"],
            (404, {"error": {"code": "not_found"}}),
        ])
        done = [e for e in h.events if e["type"] != "invoke"]
        self.assertEqual([e["type"] for e in done],
                         ["ok", "fail", "fail", "info", "info", "info"])
        self.assertEqual(done[0]["term"], 3)
        self.assertEqual(done[0]["deadline_ms"], 2005)
        self.assertEqual(len(counters.unexpected), 1)
        self.assertEqual(counters.unexpected[0]["status"], 404)
        invs = [e for e in h.events if e["type"] == "invoke"]
        ids = [e["value"]["id"] for e in invs]
        self.assertEqual(len(set(ids)), len(ids))
        for inv, (method, path, body, headers) in zip(invs, c.bodies):
            self.assertEqual((method, path), ("POST", "/v1/commands"))
            self.assertEqual(body["id"], inv["value"]["id"])
            self.assertTrue(2000 <= body["ttl_ms"] <= 8000)
            self.assertIn(body["action"], ("start", "stop", "restart"))
            self.assertIn(body["agent"], ("a1", "a2"))
            self.assertIsInstance(inv["wall_ms"], int)
            self.assertIn("X-Rems-Request-Id", headers)
        # After each info the client takes a new process id.
        self.assertEqual([e["process"] for e in invs], [0, 0, 0, 0, 2, 4])


if __name__ == "__main__":
    unittest.main()
