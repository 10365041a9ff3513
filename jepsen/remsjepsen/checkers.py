"""Checkers. Each returns a dict with ``valid``: True, False, "unknown" or
"skipped", plus counts and the evidence of any violation.

- ``check_linearizable``: runs rems-lincheck on history.jsonl (register).
- ``check_leaders``: at most one leader per term, from the nodes' logs.
- ``check_set``: no acknowledged element lost, nothing never attempted or
  certainly failed present, from the final reads of the set workload.
- ``check_stale_reads``: a node's stale reads never go back (X-Rems-Index),
  except across a wipe of its data directory.
"""

import json
import os
import subprocess

from .history import NEMESIS, pair_ops


# ---------------------------------------------------------------------------
# rems-lincheck

LIN_FS = ("read", "write", "cas")


def filtered_history(events, path):
    """Only register operations (and nemesis events), for a checker that
    refuses other functions."""
    with open(path, "w", encoding="utf-8") as fh:
        n = 0
        for ev in events:
            if ev.get("process") != NEMESIS and ev.get("f") not in LIN_FS:
                continue
            ev = dict(ev)
            ev.pop("rems_index", None)
            ev["index"] = n
            n += 1
            fh.write(json.dumps(ev, separators=(", ", ": ")) + "\n")


def check_linearizable(lincheck, history_path, out_json, timeout, events=None,
                       log=None):
    if not lincheck or not os.path.exists(lincheck):
        return {"valid": "skipped",
                "reason": "rems-lincheck not found (%s)" % lincheck}

    def run(path):
        try:
            r = subprocess.run([lincheck, "--json", out_json, path],
                               capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, "", "timed out after %ds" % timeout
        return r.returncode, r.stdout, r.stderr

    rc, out, err = run(history_path)
    used = history_path
    if rc not in (0, 1, 3) and events is not None and rc is not None:
        # A checker that does not know stale-read: give it the register
        # operations only.
        alt = os.path.join(os.path.dirname(history_path),
                           "history-register.jsonl")
        filtered_history(events, alt)
        if log:
            log("rems-lincheck exit %s on history.jsonl (%s); retrying on "
                "history-register.jsonl" % (rc, err.strip()[:200]))
        rc, out, err = run(alt)
        used = alt
    res = {"exit": rc, "history": os.path.basename(used),
           "stdout": out.strip()[-2000:], "stderr": err.strip()[-2000:]}
    if rc == 0:
        res["valid"] = True
    elif rc == 1:
        res["valid"] = False
    elif rc == 3 or rc is None:
        res["valid"] = "unknown"
    else:
        res["valid"] = "unknown"
        res["reason"] = "rems-lincheck failed (exit %s)" % rc
    try:
        with open(out_json) as fh:
            res["report"] = json.load(fh)
    except (OSError, ValueError):
        pass
    return res


# ---------------------------------------------------------------------------
# One leader per term

def parse_log_lines(lines):
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            yield json.loads(line)
        except ValueError:
            continue


def check_leaders(logs, status_claims=()):
    """logs: {node name: iterable of log lines}. Every raft_state line with
    role leader claims its term for its node; two nodes claiming one term is
    a violation. status_claims: more (term, node id) pairs, from /status
    answers with role leader (the harness polls them once a second)."""
    claims = {}
    lines = 0
    for term, node in status_claims:
        claims.setdefault(term, {}).setdefault(str(node), "/status")
    for name, it in logs.items():
        for rec in parse_log_lines(it):
            if rec.get("event") != "raft_state":
                continue
            lines += 1
            if rec.get("role") != "leader":
                continue
            term = rec.get("term")
            node = str(rec.get("node", name))
            claims.setdefault(term, {}).setdefault(node, rec.get("ts"))
    violations = [{"term": t, "leaders": sorted(c), "at": c}
                  for t, c in sorted(claims.items(), key=lambda kv: kv[0])
                  if len(c) > 1]
    return {"valid": not violations, "raft_state_lines": lines,
            "status_claims": len(status_claims),
            "terms_with_leader": len(claims),
            "max_term": max(claims) if claims else 0,
            "violations": violations}


def read_logs(run_dir, names):
    logs = {}
    for n in names:
        p = os.path.join(run_dir, n + ".log")
        try:
            with open(p, encoding="utf-8", errors="replace") as fh:
                logs[n] = fh.readlines()
        except OSError:
            logs[n] = []
    return logs


# ---------------------------------------------------------------------------
# Set

def check_set(events, final):
    """events: the history; final: {"linearizable": {node: [elems]|None},
    "stale": {...}} (the final reads)."""
    ops = [o for o in pair_ops(events) if o["f"] == "add"]
    attempted = set(o["invoke"]["value"] for o in ops)
    acked = set(o["invoke"]["value"] for o in ops if o["type"] == "ok")
    failed = set(o["invoke"]["value"] for o in ops if o["type"] == "fail")
    unknown = attempted - acked - failed
    res = {"attempted": len(attempted), "acknowledged": len(acked),
           "failed": len(failed), "indeterminate": len(unknown),
           "reads": {}, "lost": {}, "unexpected": {},
           "failed_present": {}, "valid": True}
    missing_read = []
    for kind in ("linearizable", "stale"):
        for node, elems in sorted(final.get(kind, {}).items()):
            tag = "%s %s" % (node, kind)
            if elems is None:
                missing_read.append(tag)
                continue
            got = set(elems)
            lost = sorted(acked - got)
            unexpected = sorted(got - attempted)
            bad = sorted(got & failed)
            res["reads"][tag] = {"count": len(got),
                                 "indeterminate_present":
                                     len(got & unknown)}
            if lost:
                res["lost"][tag] = lost
            if unexpected:
                res["unexpected"][tag] = unexpected
            if bad:
                res["failed_present"][tag] = bad
            if len(elems) != len(got):
                res.setdefault("duplicates", {})[tag] = len(elems) - len(got)
    if res["lost"] or res["unexpected"] or res["failed_present"] or \
            res.get("duplicates"):
        res["valid"] = False
    elif missing_read or not final.get("linearizable"):
        res["valid"] = "unknown"
        res["missing_reads"] = missing_read
    return res


# ---------------------------------------------------------------------------
# Stale reads never go back on one node

def check_stale_reads(events):
    """For each node, a stale read B invoked after a stale read A completed
    (same node, no wipe of that node in between) must report X-Rems-Index
    >= A's. Concurrent reads may be answered in either order."""
    wipes = {}
    for ev in events:
        if ev.get("process") == NEMESIS and ev.get("f") == "wipe":
            wipes.setdefault(ev.get("value"), []).append(ev["time"])
    reads = [o for o in pair_ops(events)
             if o["f"] == "stale-read" and o["type"] == "ok"
             and isinstance(o["complete"].get("rems_index"), int)]
    by_node = {}
    for o in reads:
        by_node.setdefault(o["node"], []).append(o)
    violations = []
    checked = 0
    for node, rs in sorted(by_node.items()):
        wl = sorted(wipes.get(node, []))

        def epoch(t):
            return sum(1 for w in wl if w <= t)
        # Sweep: completions and invocations in time order.
        points = []
        for o in rs:
            points.append((o["invoke"]["time"], 1, o))
            points.append((o["complete"]["time"], 0, o))
        points.sort(key=lambda p: (p[0], p[1]))
        best = {}      # epoch -> (max index, op) over completed reads
        for t, kind, o in points:
            e = epoch(o["invoke"]["time"])
            idx = o["complete"]["rems_index"]
            if kind == 0:
                if e not in best or idx > best[e][0]:
                    best[e] = (idx, o)
                continue
            checked += 1
            prev = best.get(e)
            if prev and prev[0] > idx:
                violations.append({
                    "node": node,
                    "earlier": {"index": prev[1]["complete"]["index"],
                                "rems_index": prev[0],
                                "completed": prev[1]["complete"]["time"]},
                    "later": {"index": o["complete"]["index"],
                              "rems_index": idx,
                              "invoked": o["invoke"]["time"]}})
    return {"valid": not violations, "stale_reads": len(reads),
            "checked": checked, "nodes": sorted(by_node),
            "wipes": {k: len(v) for k, v in wipes.items()},
            "violations": violations[:50],
            "violation_count": len(violations)}


# ---------------------------------------------------------------------------

def op_counts(events):
    ops = pair_ops(events)
    total = {"invoked": len(ops), "ok": 0, "fail": 0, "info": 0,
             "incomplete": 0}
    by_f = {}
    for o in ops:
        t = o["type"] or "incomplete"
        total[t] = total.get(t, 0) + 1
        d = by_f.setdefault(o["f"], {"ok": 0, "fail": 0, "info": 0,
                                     "incomplete": 0})
        d[t] = d.get(t, 0) + 1
    total["by_f"] = by_f
    return total


def combine(checkers):
    """Overall verdict: False if any checker is False, "unknown" if any is
    unknown, else True (skipped checkers do not count)."""
    vals = [c.get("valid") for c in checkers.values()]
    if any(v is False for v in vals):
        return False
    if any(v == "unknown" for v in vals):
        return "unknown"
    return True
