"""Checkers. Each returns a dict with ``valid``: True, False, "unknown" or
"skipped", plus counts and the evidence of any violation.

- ``check_linearizable``: runs rems-lincheck on history.jsonl (register).
- ``check_leaders``: at most one leader per term, from the nodes' logs.
- ``check_set``: no acknowledged element lost, nothing never attempted or
  certainly failed present, from the final reads of the set workload.
- ``check_stale_reads``: a node's stale reads never go back (X-Rems-Index),
  except across a wipe of its data directory.
- ``check_commands``: invariants 4-7 (commands at most once, never late,
  never from a lower term, only committed ones, each with one final state)
  from the agents' execution records and the final command log.
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


# ---------------------------------------------------------------------------
# Commands (invariants 4-7 of docs/ARCHITECTURE.md, section 6)

FINAL_STATES = ("acked", "nacked", "expired", "cancelled")


def parse_ts_ms(ts):
    """Milliseconds since the epoch of a log line's ``ts``
    (``2026-11-22T04:45:43.650Z``), or None."""
    import calendar
    import datetime
    if not isinstance(ts, str):
        return None
    try:
        d = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return calendar.timegm(d.timetuple()) * 1000 + d.microsecond // 1000


def clock_windows(events, wall_base_ns, lead_s=10.0, tail_s=1.0):
    """Wall-clock intervals [(start_ms, stop_ms, text)] during which some
    node may have run under libfaketime: from the clock nemesis's
    start-clock event (widened by lead_s before it: the node is restarted
    under faketime before the event is recorded) to its stop-clock event
    (plus tail_s); a window never stopped lasts to the end."""
    out = []
    open_ = []
    end = max([ev.get("time", 0) for ev in events] + [0])
    for ev in events:
        if ev.get("process") != NEMESIS:
            continue
        if ev.get("f") == "start-clock":
            open_.append(ev)
        elif ev.get("f") == "stop-clock" and open_:
            # Each clock window holds one node; stops come in start order
            # per node, and one kind runs one window at a time.
            st = open_.pop(0)
            out.append((st["time"], ev["time"], st.get("value")))
    for st in open_:
        out.append((st["time"], end, st.get("value")))
    return [((wall_base_ns + s) / 1e6 - lead_s * 1000,
             (wall_base_ns + e) / 1e6 + tail_s * 1000, str(text))
            for s, e, text in out]


def _overlaps(windows, a, b):
    for s, e, text in windows:
        if s <= b and a <= e:
            return text
    return None


def check_commands(events, command_log, agent_logs, skew_ms=500,
                   margin_ms=100, allowance_ms=250, wall_base_ns=0,
                   settle=None, examples=10):
    """Invariants 4-7 for the commands workload.

    events: the history (``command`` operations, whose invoke carries
    ``wall_ms``, and nemesis events); command_log: every command of the
    final ``GET /v1/commands`` (None: it could not be read); agent_logs:
    {agent id: [parsed log records, in file order, restarts included]};
    wall_base_ns: the wall clock (ns since the epoch) of history time 0.

    - 4: no (agent, id) has two ``command_started`` records.
    - 5: for each start, ``elapsed_ms < ttl_remaining_ms`` (the agent's own
      rule); and, in the harness's time base, the start's ``ts`` is before
      the POST's invoke wall time + ttl_ms + skew + margin + allowance. A
      start later than that whose [invoke, start] span meets a clock window
      is excused (ADR 0004 assumes bounded skew); one that is not excused
      but is within the leader's recorded ``deadline_ms`` (+ allowance),
      with ``issued_ms`` after the invoke and no clock fault, was proposed
      late (the leader proposed after the POST was sent: the deadline runs
      from there) and is counted, not failed. The leader's ``deadline_ms``
      (the machine's one real clock outside clock windows) is also checked
      on its own: a start after it is a violation unless excused.
    - 6: per agent, the terms of successive starts never decrease.
    - 7: every command an agent received or started is in the final log
      (committed), and is that agent's; no command of the log is pending
      and each has one final state; every ok POST's command is in the log
      (else a lost acknowledged write); no POST that certainly failed is in
      the log, and nothing is in it that the harness never posted.

    Counted, not failing: late starts excused by a clock window
    (``5_excused_by_clock``: after the invoke-based bound, i.e. late in
    real time; ``5_deadline_skewed_by_clock``: after a ``deadline_ms``
    computed by a leader whose clock was faked, which says nothing about
    real time); starts whose command ended expired, nacked or cancelled;
    commands acked without a start (split by the ack's ``duplicate``
    mark).
    """
    ops = [o for o in pair_ops(events) if o["f"] == "command"]
    posted = {}
    for o in ops:
        v = o["invoke"].get("value") or {}
        posted[v.get("id")] = o
    outcome = {"ok": 0, "fail": 0, "info": 0, "incomplete": 0}
    for o in ops:
        outcome[o["type"] or "incomplete"] += 1
    windows = clock_windows(events, wall_base_ns)
    res = {"valid": True, "posted": len(ops), "post_outcomes": outcome,
           "clock_windows": len(windows), "allowance_ms": allowance_ms,
           "max_clock_skew_ms": skew_ms, "send_margin_ms": margin_ms}
    if settle is not None:
        res["settle"] = settle
    viol = {k: [] for k in (
        "4_double_start", "5_agent_rule", "5_late_vs_invoke",
        "5_late_vs_deadline", "6_term_decreased", "7_uncommitted_started",
        "7_uncommitted_received", "7_wrong_agent", "7_unknown_id",
        "7_pending_at_end", "7_bad_state", "7_lost_acknowledged",
        "7_failed_present", "7_never_posted")}
    counted = {k: [] for k in (
        "5_excused_by_clock", "5_deadline_skewed_by_clock",
        "5_late_proposal", "started_then_expired",
        "started_then_nacked", "started_then_cancelled",
        "acked_not_started_duplicate", "acked_not_started_other")}

    if command_log is None:
        res["valid"] = "unknown"
        res["reason"] = "the command log could not be read"
        log_by_id = {}
    else:
        log_by_id = {c.get("id"): c for c in command_log}
        states = {}
        for c in command_log:
            st = c.get("state")
            states[st] = states.get(st, 0) + 1
            if st == "pending":
                viol["7_pending_at_end"].append({"id": c.get("id"),
                                                 "agent": c.get("agent")})
            elif st not in FINAL_STATES:
                viol["7_bad_state"].append({"id": c.get("id"), "state": st})
            if c.get("id") not in posted:
                viol["7_never_posted"].append({"id": c.get("id")})
            else:
                o = posted[c.get("id")]
                if o["type"] == "fail":
                    viol["7_failed_present"].append({
                        "id": c.get("id"),
                        "post": o["complete"].get("error"),
                        "index": o["complete"]["index"],
                        "state": st})
        res["log"] = {"commands": len(command_log), "states": states}
        for cid, o in posted.items():
            if o["type"] == "ok" and cid not in log_by_id:
                viol["7_lost_acknowledged"].append({
                    "id": cid, "index": o["complete"]["index"],
                    "node": o["node"]})
        res["indeterminate_in_log"] = sum(
            1 for cid, o in posted.items()
            if o["type"] in ("info", None) and cid in log_by_id)

    # Agents' records.
    started = {}          # (agent, id) -> [records]
    per_agent = {}
    nack_reasons = {}
    for agent, recs in sorted(agent_logs.items()):
        st = {"started": 0, "received": 0, "acks": 0, "nacks": 0,
              "agent_starts": 0}
        last_term = None
        for rec in recs:
            ev = rec.get("event")
            if ev == "agent_started":
                st["agent_starts"] += 1
            elif ev == "command_received":
                st["received"] += 1
                cid = rec.get("id")
                c = log_by_id.get(cid)
                if command_log is not None and c is None:
                    viol["7_uncommitted_received"].append({
                        "agent": agent, "id": cid, "ts": rec.get("ts"),
                        "term": rec.get("term")})
                elif c is not None and c.get("agent") != agent:
                    viol["7_wrong_agent"].append({
                        "agent": agent, "id": cid, "owner": c.get("agent"),
                        "record": "command_received", "ts": rec.get("ts")})
            elif ev == "command_ack":
                st["acks"] += 1
            elif ev == "command_nack":
                st["nacks"] += 1
                r = rec.get("reason")
                nack_reasons[r] = nack_reasons.get(r, 0) + 1
            if ev != "command_started":
                continue
            st["started"] += 1
            cid = rec.get("id")
            term = rec.get("term")
            started.setdefault((agent, cid), []).append(rec)
            # 6: terms never go down on one agent.
            if isinstance(term, int):
                if last_term is not None and term < last_term:
                    viol["6_term_decreased"].append({
                        "agent": agent, "id": cid, "term": term,
                        "after_term": last_term, "ts": rec.get("ts")})
                last_term = term if last_term is None else \
                    max(last_term, term)
            # 5, the agent's own rule.
            ttl_rem = rec.get("ttl_remaining_ms")
            elapsed = rec.get("elapsed_ms")
            if not (isinstance(ttl_rem, int) and isinstance(elapsed, int)
                    and elapsed < ttl_rem):
                viol["5_agent_rule"].append({
                    "agent": agent, "id": cid, "elapsed_ms": elapsed,
                    "ttl_remaining_ms": ttl_rem, "ts": rec.get("ts")})
            # 7: committed, and this agent's.
            c = log_by_id.get(cid)
            if command_log is not None and c is None:
                viol["7_uncommitted_started"].append({
                    "agent": agent, "id": cid, "ts": rec.get("ts"),
                    "term": term})
            elif c is not None and c.get("agent") != agent:
                viol["7_wrong_agent"].append({
                    "agent": agent, "id": cid, "owner": c.get("agent"),
                    "record": "command_started", "ts": rec.get("ts")})
            # 5, in the harness's time base and the leader's.
            o = posted.get(cid)
            t = parse_ts_ms(rec.get("ts"))
            if o is None:
                viol["7_unknown_id"].append({"agent": agent, "id": cid,
                                             "ts": rec.get("ts")})
                continue
            inv = o["invoke"]
            ttl = (inv.get("value") or {}).get("ttl_ms")
            wall = inv.get("wall_ms")
            if t is None or not isinstance(ttl, int) or \
                    not isinstance(wall, int):
                continue
            bound = wall + ttl + skew_ms + margin_ms + allowance_ms
            excuse = _overlaps(windows, wall, t)
            detail = {"agent": agent, "id": cid, "ts": rec.get("ts"),
                      "invoke_wall_ms": wall, "ttl_ms": ttl,
                      "late_by_ms": t - bound, "term": term,
                      "post": o["type"]}
            if c is not None:
                detail["issued_ms"] = c.get("issued_ms")
                detail["deadline_ms"] = c.get("deadline_ms")
            dl = c.get("deadline_ms") if c is not None else None
            if isinstance(dl, int) and t > dl + allowance_ms:
                d = dict(detail, after_deadline_ms=t - dl)
                if excuse:
                    counted["5_deadline_skewed_by_clock"].append(
                        dict(d, clock=excuse))
                else:
                    viol["5_late_vs_deadline"].append(d)
            if t > bound:
                if excuse:
                    counted["5_excused_by_clock"].append(
                        dict(detail, clock=excuse))
                elif isinstance(dl, int) and t <= dl + allowance_ms and \
                        isinstance(c.get("issued_ms"), int) and \
                        c["issued_ms"] >= wall:
                    counted["5_late_proposal"].append(
                        dict(detail, proposed_after_ms=c["issued_ms"] -
                             wall))
                else:
                    viol["5_late_vs_invoke"].append(detail)
        per_agent[agent] = st
    # 4: at most once, over each agent's whole log.
    for (agent, cid), recs in sorted(started.items()):
        if len(recs) > 1:
            viol["4_double_start"].append({
                "agent": agent, "id": cid, "starts": len(recs),
                "ts": [r.get("ts") for r in recs],
                "terms": [r.get("term") for r in recs]})
    # Counted: how started commands ended, and acks without a start.
    started_ids = set(cid for (_, cid) in started)
    for cid in sorted(started_ids):
        c = log_by_id.get(cid)
        st = c.get("state") if c else None
        if st in ("expired", "nacked", "cancelled"):
            counted["started_then_" + st].append({
                "id": cid, "agent": c.get("agent"),
                "result": c.get("result")})
    for c in command_log or []:
        if c.get("state") != "acked" or c.get("id") in started_ids:
            continue
        r = c.get("result")
        dup = isinstance(r, dict) and r.get("duplicate") is True
        counted["acked_not_started_duplicate" if dup else
                "acked_not_started_other"].append({
                    "id": c.get("id"), "agent": c.get("agent"),
                    "result": r})
    res["agents"] = per_agent
    res["nack_reasons"] = nack_reasons
    res["started"] = sum(len(v) for v in started.values())
    res["started_commands"] = len(started_ids)
    res["violations"] = {k: len(v) for k, v in viol.items()}
    res["violation_examples"] = {k: v[:examples] for k, v in viol.items()
                                 if v}
    res["counted"] = {k: len(v) for k, v in counted.items()}
    ex = counted["5_excused_by_clock"]
    if ex:
        res["excused_by_clock_max_late_ms"] = max(e["late_by_ms"]
                                                  for e in ex)
    res["counted_examples"] = {k: v[:examples] for k, v in counted.items()
                               if v}
    if any(viol.values()):
        res["valid"] = False
    return res
