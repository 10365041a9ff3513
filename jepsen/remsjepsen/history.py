"""The history of a test: one event per operation step, in the order the
harness observed them, written as JSON lines (history.jsonl, the contract
with rems-lincheck, see jepsen/HISTORY.md) and as a Jepsen EDN history
(history.edn), one map per line.

Events are appended under one lock, and the time is taken inside that lock,
so ``index`` counts from 0 and ``time`` never decreases in the files.
"""

import json
import math
import re
import threading
import time

# JSON field order (keys not listed here follow, sorted).
FIELD_ORDER = ("index", "type", "process", "time", "f", "key", "value",
               "node", "error", "rems_index")

NEMESIS = "nemesis"


class Keyword(str):
    """A string written as an EDN keyword (``:name``)."""


_KEYWORD_RE = re.compile(r"^[A-Za-z*+!_?<>=-][A-Za-z0-9*+!_?<>=.\-/#]*$")


def edn_string(s):
    """An EDN string literal: quotes, backslashes and control characters
    escaped (\\n, \\t, \\r, others as \\uXXXX); other characters as UTF-8."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F or o in (0x2028, 0x2029):
            out.append("\\u%04x" % o)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def edn_keyword(name):
    """``:name`` when name is a valid keyword name, else a string."""
    if _KEYWORD_RE.match(name) and not name[0].isdigit() and \
            not (name[0] in "+-." and len(name) > 1 and name[1].isdigit()):
        return ":" + name
    return edn_string(name)


def edn(v):
    """Encode a Python value as EDN text."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, Keyword):
        return edn_keyword(str(v))
    if isinstance(v, str):
        return edn_string(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "##NaN"
        if math.isinf(v):
            return "##Inf" if v > 0 else "##-Inf"
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(edn(x) for x in v) + "]"
    if isinstance(v, (set, frozenset)):
        items = sorted(v, key=lambda x: (str(type(x)), x))
        return "#{" + " ".join(edn(x) for x in items) + "}"
    if isinstance(v, dict):
        return "{" + ", ".join(edn(k) + " " + edn(x)
                               for k, x in v.items()) + "}"
    raise TypeError("cannot encode %r as EDN" % (v,))


def ordered(ev):
    """The event as a dict in FIELD_ORDER (for stable JSON lines)."""
    out = {}
    for k in FIELD_ORDER:
        if k in ev:
            out[k] = ev[k]
    for k in sorted(ev):
        if k not in out:
            out[k] = ev[k]
    return out


def to_edn_map(ev):
    """Jepsen's representation of one history event.

    Register operations use Jepsen's independent-key tuples: ``:value
    [:r1 4]``, cas ``[:r1 [4 5]]``, read invoke ``[:r1 nil]``. Set reads
    are EDN sets. Nemesis events have ``:process :nemesis``. Keys with an
    underscore are written with a hyphen (``rems_index`` -> ``:rems-index``).
    """
    m = {}
    for k, v in ordered(ev).items():
        if k == "key":
            continue
        kw = Keyword(k.replace("_", "-"))
        if k == "type":
            v = Keyword(v)
        elif k == "f":
            v = Keyword(v)
        elif k == "process" and v == NEMESIS:
            v = Keyword(NEMESIS)
        elif k == "value":
            if "key" in ev and ev.get("process") != NEMESIS:
                v = [Keyword(ev["key"]) if _KEYWORD_RE.match(ev["key"])
                     else ev["key"], v]
            elif ev.get("f") in ("read", "stale-read") and \
                    isinstance(v, list):
                v = frozenset(v)
        m[kw] = v
    return m


def edn_line(ev):
    return edn(to_edn_map(ev))


class History:
    """Thread-safe recorder. ``append`` stamps index and time (ns since t0,
    from time.monotonic_ns) and writes both files at once, so a crash keeps
    everything recorded so far."""

    def __init__(self, jsonl_path=None, edn_path=None, t0_ns=None):
        self.lock = threading.Lock()
        self.t0 = time.monotonic_ns() if t0_ns is None else t0_ns
        # The wall clock (ns since the epoch) of time 0, to compare history
        # times with wall-clock log timestamps.
        self.t0_wall_ns = time.time_ns() - (time.monotonic_ns() - self.t0)
        self.events = []
        self._jsonl = open(jsonl_path, "w", encoding="utf-8") \
            if jsonl_path else None
        self._edn = open(edn_path, "w", encoding="utf-8") if edn_path else None
        self._last_time = 0
        self.closed = False

    def now(self):
        return time.monotonic_ns() - self.t0

    def append(self, ev, t=None):
        """Record ev (a dict without index/time); returns the stored event."""
        with self.lock:
            now = self.now() if t is None else t
            if now < self._last_time:
                now = self._last_time
            self._last_time = now
            ev = dict(ev)
            ev["index"] = len(self.events)
            ev["time"] = now
            ev = ordered(ev)
            if self.closed:
                return ev
            self.events.append(ev)
            if self._jsonl:
                self._jsonl.write(json.dumps(ev, separators=(", ", ": "))
                                  + "\n")
                self._jsonl.flush()
            if self._edn:
                self._edn.write(edn_line(ev) + "\n")
                self._edn.flush()
            return ev

    def nemesis(self, f, value):
        return self.append({"type": "info", "process": NEMESIS, "f": f,
                            "value": value})

    def close(self):
        with self.lock:
            for fh in (self._jsonl, self._edn):
                if fh:
                    fh.close()
            self._jsonl = self._edn = None
            self.closed = True


def read_jsonl(path):
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def pair_ops(events):
    """Match each invoke with its completion (same process, in order).

    Returns a list of dicts: invoke, complete (or None when the history
    ended first), f, key, process, node, type (ok/fail/info/None)."""
    pending = {}
    ops = []
    for ev in events:
        p = ev.get("process")
        if p == NEMESIS:
            continue
        if ev["type"] == "invoke":
            op = {"invoke": ev, "complete": None, "f": ev.get("f"),
                  "key": ev.get("key"), "process": p, "node": ev.get("node"),
                  "type": None}
            pending[p] = op
            ops.append(op)
        else:
            op = pending.pop(p, None)
            if op is None:
                continue
            op["complete"] = ev
            op["type"] = ev["type"]
    return ops
