"""Clients: threads that call a random node's admin API, one operation at
a time, and record each operation's invoke and completion in the history.
Workloads: register, set and commands (CommandClient, below).

How outcomes are recorded (``fail`` means "certainly had no effect"):

- 200 (and 404 on reads: the key is absent) -> ``ok``.
- 409 on a conditional PUT -> ``fail`` ("conflict").
- A timeout, a reset, a 5xx after the request was sent -> ``info`` (unknown)
  for writes, cas and adds; the client then takes a new process id
  (process + concurrency), as in Jepsen.
- Reads (linearizable and stale) have no effect, so a read that got no
  answer is a ``fail``, never ``info``.
- When the TCP connection could not even be opened (refused, connect
  timeout), no byte of the request was sent: ``fail``, error "connect: ...".
- ``503`` with code ``no_leader`` on a write: the node promises that the
  write was never proposed (docs/api.md, "Errors"): ``fail``. Other 5xx
  (``unavailable``: leadership lost in flight, or the forward to the leader
  broke after sending) stay ``info``.
- Register writes use values unique per key (worker + k * concurrency), so
  a read names the one write it observed; cas expects the value this
  client last read of the key and writes a new unique value.
- cas is a linearizable GET then, only when the value is the expected one,
  a PUT with If-Match: <revision>. A GET that finds another value completes
  as ``fail`` ("mismatch"); a GET that fails completes as ``fail`` too
  ("read: ..."): no write was sent.
- Any other 4xx is a harness bug or an API contract break: recorded as
  ``info`` with the error, and counted (checker "unexpected-responses").
"""

import random
import threading
import time

REGISTER_PREFIX = "jepsen/"
SET_KEY = "jepsen/set"


class Counters:
    def __init__(self):
        self.lock = threading.Lock()
        self.c = {"ok": 0, "fail": 0, "info": 0}
        self.unexpected = []

    def add(self, kind):
        with self.lock:
            self.c[kind] = self.c.get(kind, 0) + 1

    def add_unexpected(self, what):
        with self.lock:
            self.unexpected.append(what)

    def snapshot(self):
        with self.lock:
            return dict(self.c)


def policy_doc(meta):
    """A valid policy document that places nothing (agent "none") and
    carries @meta, the workload's value, as its metadata."""
    return {"placement": {"agents": ["none"]}, "services": [],
            "metadata": meta}


def policy_meta(body):
    """The metadata (the workload's value) of a GET /v1/policies answer."""
    v = body.get("value") if isinstance(body, dict) else None
    m = v.get("metadata") if isinstance(v, dict) else None
    return m if isinstance(m, dict) else None


def _err(r):
    if r.status is None:
        return ("connect: " if r.phase == "connect" else "") + r.error
    code = r.error_code() or ""
    return ("%d %s" % (r.status, code)).strip()


def _unexpected(r):
    return r.status is not None and 400 <= r.status < 500 and \
        r.status not in (404, 409)


class Client(threading.Thread):
    """Base: op loop, pacing, process ids."""

    def __init__(self, worker, cluster, history, opts, stop_ev, counters,
                 run_tag):
        super().__init__(name="client-%d" % worker, daemon=True)
        self.worker = worker
        self.cluster = cluster
        self.history = history
        self.opts = opts
        self.stop_ev = stop_ev
        self.counters = counters
        self.process = worker
        self.rng = random.Random("%s:client:%d" % (opts.seed, worker))
        self.seq = 0
        self.run_tag = run_tag
        self.mean_pause = opts.concurrency / float(opts.rate) \
            if opts.rate > 0 else 0.0

    def request_id(self):
        self.seq += 1
        return "rj-%s-%d-%d-%d" % (self.run_tag, self.worker, self.process,
                                   self.seq)

    def invoke(self, f, node, value=None, key=None):
        ev = {"type": "invoke", "process": self.process, "f": f}
        if key is not None:
            ev["key"] = key
        ev["value"] = value
        ev["node"] = node.name
        return self.history.append(ev)

    def complete(self, inv, typ, value=None, error=None, extra=None,
                 response=None):
        ev = {"type": typ, "process": inv["process"], "f": inv["f"]}
        if "key" in inv:
            ev["key"] = inv["key"]
        ev["value"] = value
        ev["node"] = inv["node"]
        if error is not None:
            ev["error"] = error
        if extra:
            ev.update(extra)
        out = self.history.append(ev)
        self.counters.add(typ)
        if response is not None and _unexpected(response):
            self.counters.add_unexpected({
                "index": out["index"], "f": inv["f"], "node": inv["node"],
                "status": response.status,
                "body": response.raw[:300].decode("utf-8", "replace")})
        if typ == "info":
            self.process += self.opts.concurrency
        return out

    def pick_node(self):
        return self.cluster.nodes[self.rng.randrange(len(self.cluster.nodes))]

    def run(self):
        while not self.stop_ev.is_set():
            try:
                self.step()
            except Exception as e:  # noqa: BLE001 - keep the client alive
                self.cluster.log("client %d: %s: %s" % (self.worker,
                                                         type(e).__name__, e))
            if self.mean_pause > 0:
                self.stop_ev.wait(min(self.rng.expovariate(
                    1.0 / self.mean_pause), 5 * self.mean_pause))

    def step(self):
        raise NotImplementedError


class RegisterClient(Client):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.keys = ["r%d" % i for i in range(self.opts.keys)]
        self.k = 0
        self.seen = {}  # key -> the value this client last read

    def fresh(self):
        """A value no other write of this run uses."""
        self.k += 1
        return self.worker + self.k * self.opts.concurrency

    def path(self, key):
        return "/v1/policies/" + REGISTER_PREFIX + key

    def step(self):
        rng = self.rng
        node = self.pick_node()
        key = self.keys[rng.randrange(len(self.keys))]
        x = rng.random()
        if x < 0.5:
            if rng.random() < self.opts.stale_fraction:
                self.stale_read(node, key)
            else:
                self.read(node, key)
        elif x < 0.75:
            self.write(node, key, self.fresh())
        else:
            self.cas(node, key, self.seen.get(key), self.fresh())

    def _get(self, node, key, stale=False):
        path = self.path(key) + ("?consistency=stale" if stale else "")
        return self.cluster.call(node, "GET", path,
                                 timeout=self.opts.timeout)

    @staticmethod
    def _value(r):
        """(ok, value, revision) from a GET answer."""
        if r.status == 200 and isinstance(r.body, dict):
            v = policy_meta(r.body)
            return True, (v.get("v") if v is not None else None), \
                r.body.get("revision")
        if r.status == 404 and r.error_code() == "not_found":
            return True, None, 0
        return False, None, None

    def read(self, node, key):
        inv = self.invoke("read", node, None, key)
        r = self._get(node, key)
        ok, v, _ = self._value(r)
        if ok:
            self.seen[key] = v
            self.complete(inv, "ok", v)
        elif _unexpected(r):
            self.complete(inv, "info", None, _err(r), response=r)
        else:
            self.complete(inv, "fail", None, _err(r))

    def stale_read(self, node, key):
        inv = self.invoke("stale-read", node, None, key)
        r = self._get(node, key, stale=True)
        ok, v, _ = self._value(r)
        idx = r.header("X-Rems-Index")
        if ok and idx is not None and idx.isdigit():
            self.complete(inv, "ok", v, extra={"rems_index": int(idx)})
        elif _unexpected(r):
            self.complete(inv, "info", None, _err(r), response=r)
        else:
            self.complete(inv, "fail", None, _err(r) if not ok
                          else "no X-Rems-Index")

    def _put(self, node, key, v, if_match=None):
        h = {"X-Rems-Request-Id": self.request_id(), "X-Rems-User": "jepsen"}
        if if_match is not None:
            h["If-Match"] = str(if_match)
        return self.cluster.call(node, "PUT", self.path(key),
                                 body=policy_doc({"v": v}), headers=h,
                                 timeout=self.opts.timeout)

    def _put_outcome(self, inv, r, value):
        if r.status == 200:
            self.complete(inv, "ok", value)
        elif r.status == 409 and inv["f"] == "cas":
            self.complete(inv, "fail", value, "conflict")
        elif r.status is None and r.phase == "connect":
            self.complete(inv, "fail", value, _err(r))
        elif r.status == 503 and r.error_code() == "no_leader":
            self.complete(inv, "fail", value, _err(r))
        else:
            self.complete(inv, "info", value, _err(r), response=r)

    def write(self, node, key, v):
        inv = self.invoke("write", node, v, key)
        self._put_outcome(inv, self._put(node, key, v), v)

    def cas(self, node, key, a, b):
        inv = self.invoke("cas", node, [a, b], key)
        r = self._get(node, key)
        ok, cur, rev = self._value(r)
        if not ok:
            if _unexpected(r):
                self.complete(inv, "info", [a, b], "read: " + _err(r),
                              response=r)
            else:
                self.complete(inv, "fail", [a, b], "read: " + _err(r))
            return
        if cur != a:
            self.complete(inv, "fail", [a, b], "mismatch")
            return
        self._put_outcome(inv, self._put(node, key, b, if_match=rev), [a, b])


class SetClient(Client):
    """Adds unique integers (worker + k * concurrency) to one policy by
    compare-and-set append."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.k = 0
        self.path = "/v1/policies/" + SET_KEY

    def step(self):
        node = self.pick_node()
        elem = self.worker + self.k * self.opts.concurrency
        self.k += 1
        inv = self.invoke("add", node, elem)
        unknown = None
        why = "gave up"
        for attempt in range(self.opts.set_retries):
            if attempt:
                # Back off a little: every client appends to the same key.
                if self.stop_ev.wait(self.rng.uniform(0, 0.02 * attempt)):
                    why = "stopped after %d conflicts" % attempt
                    break
            r = self.cluster.call(node, "GET", self.path,
                                  timeout=self.opts.timeout)
            if r.status == 200 and isinstance(r.body, dict):
                val = policy_meta(r.body) or {}
                elems = list(val.get("elems", []))
                rev = r.body.get("revision")
            elif r.status == 404 and r.error_code() == "not_found":
                elems, rev = [], 0
            else:
                if _unexpected(r):
                    self.complete(inv, "info", elem, "read: " + _err(r),
                                  response=r)
                    return
                why = "read: " + _err(r)   # no write sent in this attempt
                break
            elems.append(elem)
            h = {"X-Rems-Request-Id": self.request_id(),
                 "X-Rems-User": "jepsen", "If-Match": str(rev)}
            w = self.cluster.call(node, "PUT", self.path,
                                  body=policy_doc({"elems": elems}),
                                  headers=h,
                                  timeout=self.opts.timeout)
            if w.status == 200:
                self.complete(inv, "ok", elem)
                return
            if w.status == 409:
                why = "conflict %d times" % (attempt + 1)
                continue
            if (w.status is None and w.phase == "connect") or \
                    (w.status == 503 and w.error_code() == "no_leader"):
                why = _err(w)
                break
            unknown = w
            break
        if unknown is not None:
            self.complete(inv, "info", elem, _err(unknown), response=unknown)
        else:
            self.complete(inv, "fail", elem, why)


class CommandClient(Client):
    """Issues commands (``f`` "command") to random agents through random
    nodes. Every command has an id chosen here, unique in the run, so that
    even one whose POST got no answer can be found in the command log and in
    the agents' execution records.

    value: {"id", "agent", "action", "service", "ttl_ms"}; the invoke also
    carries ``wall_ms``, the harness's wall clock (ms since the epoch) just
    before the request left, for the deadline check. ``ok`` (201) carries
    the leader's ``term``, ``issued_ms`` and ``deadline_ms``.

    201 -> ok; the connection could not be opened, or 503 ``no_leader``
    (never proposed) -> fail; any 4xx (the agent is registered and the id
    fresh: 404 or 409 would be a contract break) -> info, counted as
    unexpected; timeouts, resets, other 5xx -> info.
    """

    def __init__(self, *a, agents=(), services=(), **kw):
        super().__init__(*a, **kw)
        self.agents = list(agents)
        self.services = list(services)
        self.actions = [x.strip() for x in
                        self.opts.command_actions.split(",") if x.strip()]
        lo, hi = (int(x) for x in self.opts.command_ttl.split(","))
        self.ttl = (lo, hi)
        self.k = 0

    def step(self):
        rng = self.rng
        node = self.pick_node()
        agent = self.agents[rng.randrange(len(self.agents))]
        service = self.services[rng.randrange(len(self.services))]
        action = self.actions[rng.randrange(len(self.actions))]
        ttl = rng.randint(*self.ttl)
        self.k += 1
        cid = "rj-%s-c%d-%d" % (self.run_tag, self.worker, self.k)
        value = {"id": cid, "agent": agent, "action": action,
                 "service": service, "ttl_ms": ttl}
        wall = time.time_ns() // 1000000
        inv = self.history.append({"type": "invoke", "process": self.process,
                                   "f": "command", "value": value,
                                   "node": node.name, "wall_ms": wall})
        body = dict(value)
        body["reason"] = "jepsen"
        h = {"X-Rems-Request-Id": self.request_id(), "X-Rems-User": "jepsen"}
        r = self.cluster.call(node, "POST", "/v1/commands", body=body,
                              headers=h, timeout=self.opts.timeout)
        if r.status == 201:
            extra = {}
            if isinstance(r.body, dict):
                for k in ("term", "issued_ms", "deadline_ms"):
                    if k in r.body:
                        extra[k] = r.body[k]
            self.complete(inv, "ok", value, extra=extra)
        elif (r.status is None and r.phase == "connect") or \
                (r.status == 503 and r.error_code() == "no_leader"):
            self.complete(inv, "fail", value, _err(r))
        else:
            out = self.complete(inv, "info", value, _err(r))
            if r.status is not None and 400 <= r.status < 500:
                self.counters.add_unexpected({
                    "index": out["index"], "f": "command",
                    "node": inv["node"], "status": r.status,
                    "body": r.raw[:300].decode("utf-8", "replace")})


def make_clients(workload, cluster, history, opts, stop_ev, counters, tag,
                 agents=(), services=()):
    if workload == "commands":
        return [CommandClient(w, cluster, history, opts, stop_ev, counters,
                              tag, agents=agents, services=services)
                for w in range(opts.concurrency)]
    cls = RegisterClient if workload == "register" else SetClient
    return [cls(w, cluster, history, opts, stop_ev, counters, tag)
            for w in range(opts.concurrency)]


# ---------------------------------------------------------------------------
# The command log, after the heal

def _leader_or_any(cluster):
    b = cluster.find_leader(timeout=1.0)
    if b:
        return b[0]
    live = cluster.live_nodes()
    return live[0] if live else None


def wait_commands_settled(cluster, until_wall_ms, log=None, poll=1.0):
    """Poll GET /v1/commands?state=pending (linearizable, on the leader)
    until no command is pending, or the wall clock passed until_wall_ms
    (every issued command's deadline plus slack). Returns {"settled",
    "seconds", "pending" (ids still pending at the last answer), "polls"}."""
    t0 = time.monotonic()
    last = None
    polls = 0
    while True:
        node = _leader_or_any(cluster)
        if node is not None:
            r = cluster.call(node, "GET",
                             "/v1/commands?state=pending&limit=1000",
                             timeout=5.0)
            polls += 1
            if r.status == 200 and isinstance(r.body, dict):
                last = [x.get("id") for x in r.body.get("items", [])]
                if not last:
                    return {"settled": True, "polls": polls, "pending": [],
                            "seconds": round(time.monotonic() - t0, 1)}
        if time.time() * 1000 > until_wall_ms:
            return {"settled": False, "polls": polls, "pending": last,
                    "seconds": round(time.monotonic() - t0, 1)}
        time.sleep(poll)


def read_command_log(cluster, timeout=60.0, page=1000):
    """Every command, by pages of GET /v1/commands (linearizable, on the
    leader). Returns (items, None) or (None, error)."""
    deadline = time.monotonic() + timeout
    err = "no node answered"
    while time.monotonic() < deadline:
        node = _leader_or_any(cluster)
        if node is None:
            time.sleep(1.0)
            continue
        items = []
        after = None
        ok = True
        while True:
            path = "/v1/commands?limit=%d" % page
            if after:
                path += "&after=" + after
            r = cluster.call(node, "GET", path, timeout=10.0)
            if r.status != 200 or not isinstance(r.body, dict):
                err = "%s: %s" % (node.name, _err(r))
                ok = False
                break
            items += r.body.get("items", [])
            after = r.body.get("next_after")
            if not after:
                break
        if ok:
            return items, None
        time.sleep(1.0)
    return None, err


# ---------------------------------------------------------------------------
# Final reads, after every fault is healed

class FinalReader:
    def __init__(self, cluster, history, process_base, timeout=3.0):
        self.cluster = cluster
        self.history = history
        self.process = process_base
        self.timeout = timeout

    def _op(self, f, node, key, path, deadline, decode):
        """Invoke/complete one read, retried (new process each time) until
        it answers or the deadline passes. Returns the value or raises."""
        while True:
            self.process += 1
            ev = {"type": "invoke", "process": self.process, "f": f}
            if key is not None:
                ev["key"] = key
            ev["value"] = None
            ev["node"] = node.name
            inv = self.history.append(ev)
            r = self.cluster.call(node, "GET", path, timeout=self.timeout)
            done = {"type": "ok", "process": inv["process"], "f": f}
            if key is not None:
                done["key"] = key
            done["node"] = node.name
            ok = r.status == 200 or (r.status == 404 and
                                     r.error_code() == "not_found")
            if ok:
                v = decode(r)
                done["value"] = v
                idx = r.header("X-Rems-Index")
                if f == "stale-read" and idx and idx.isdigit():
                    done["rems_index"] = int(idx)
                self.history.append(done)
                return True, v
            done["type"] = "fail"
            done["value"] = None
            done["error"] = _err(r)
            self.history.append(done)
            if time.monotonic() > deadline:
                return False, _err(r)
            time.sleep(0.5)

    def register(self, keys, timeout=30):
        """A linearizable read of every key on every node (each node gets
        timeout seconds for all its keys)."""
        out = {}
        for node in self.cluster.nodes:
            deadline = time.monotonic() + timeout
            for key in keys:
                path = "/v1/policies/" + REGISTER_PREFIX + key

                def dec(r):
                    if r.status == 200 and isinstance(r.body, dict):
                        v = policy_meta(r.body)
                        return v.get("v") if v is not None else None
                    return None
                out[(node.name, key)] = self._op(
                    "read", node, key, path, deadline, dec)
        return out

    def set(self, timeout=60):
        """Linearizable read on every node, then, once each node has
        applied the leader's commit index, a stale read on every node.
        Returns {"linearizable": {node: elems|None}, "stale": {...},
        "errors": [...]}."""
        def dec(r):
            if r.status == 200 and isinstance(r.body, dict):
                return sorted((policy_meta(r.body) or {}).get("elems", []))
            return []
        res = {"linearizable": {}, "stale": {}, "errors": []}
        path = "/v1/policies/" + SET_KEY
        for node in self.cluster.nodes:
            ok, v = self._op("read", node, None, path,
                             time.monotonic() + timeout, dec)
            res["linearizable"][node.name] = v if ok else None
            if not ok:
                res["errors"].append("%s: linearizable read: %s"
                                     % (node.name, v))
        target = None
        b = self.cluster.find_leader(timeout=2.0)
        if b:
            target = b[2].get("commit_index")
        for node in self.cluster.nodes:
            deadline = time.monotonic() + timeout
            applied = None
            while target is not None and time.monotonic() < deadline:
                st = self.cluster.status(node, timeout=2.0)
                applied = st.get("applied_index") if st else None
                if applied is not None and applied >= target:
                    break
                time.sleep(0.25)
            if target is None or applied is None or applied < target:
                res["errors"].append("%s: applied %s, leader commit %s"
                                     % (node.name, applied, target))
            ok, v = self._op("stale-read", node, None,
                             path + "?consistency=stale",
                             time.monotonic() + timeout, dec)
            res["stale"][node.name] = v if ok else None
            if not ok:
                res["errors"].append("%s: stale read: %s" % (node.name, v))
        return res
