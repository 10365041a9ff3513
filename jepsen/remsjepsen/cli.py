"""``jepsen/run``: set up a cluster, run a workload under faults, heal,
check, report. Exit status 0 valid, 1 invalid (or unknown), 2 harness error
or aborted run."""

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

from . import VERSION
from . import checkers, nemesis as nem, net as netmod, report, scenarios
from . import agents as agentsmod
from . import workloads
from .history import History
from .nodes import Cluster, faketime_lib

JEPSEN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(JEPSEN_DIR)
MAKE_TEST_CA = os.path.join(REPO, "tests", "lib", "make-test-ca.sh")
FINAL_PROCESS_BASE = 1000000


class HarnessError(Exception):
    pass


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="jepsen/run",
        description="Partition-testing harness for rems (remsd). "
                    "See jepsen/README.md.")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--time", type=float, default=60,
                   help="seconds of workload under faults (default 60)")
    p.add_argument("--nemesis", default="partition,kill",
                   help="comma-separated: partition,kill,pause,clock,member "
                        "or none (default partition,kill)")
    p.add_argument("--workload", choices=("register", "set", "commands"),
                   default="register")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--seed", type=int, default=None,
                   help="seed of every random choice (default: random, "
                        "printed)")
    p.add_argument("--remsd", default=os.path.join(REPO, "build", "api",
                                                   "remsd"))
    p.add_argument("--agent-bin", default=None,
                   help="rems-agent, for the commands workload (default: "
                        "agentproto/rems-agent of the build that holds "
                        "--remsd)")
    p.add_argument("--services", type=int, default=3,
                   help="commands workload: services s1..sN per agent "
                        "(default 3)")
    p.add_argument("--command-actions", default="start,stop,restart",
                   help="commands workload: actions to draw from (default "
                        "start,stop,restart)")
    p.add_argument("--command-ttl", default="2000,8000",
                   help="commands workload: MIN,MAX ttl_ms (default "
                        "2000,8000)")
    p.add_argument("--lease-ttl-ms", type=int, default=3000)
    p.add_argument("--agent-heartbeat-ms", type=int, default=500)
    p.add_argument("--max-clock-skew-ms", type=int, default=500)
    p.add_argument("--send-margin-ms", type=int, default=100)
    p.add_argument("--deadline-allowance-ms", type=int, default=250,
                   help="commands checker: added to every deadline bound "
                        "(delivery, log timestamps; default 250)")
    p.add_argument("--lincheck", default=None,
                   help="rems-lincheck (default build/jepsen/rems-lincheck; "
                        "the register check is skipped when the default is "
                        "missing)")
    p.add_argument("--store", default=os.path.join(JEPSEN_DIR, "store"))
    p.add_argument("--name", default=None, help="test name (store folder)")
    p.add_argument("--keep", action="store_true",
                   help="keep the nodes' data directories")
    p.add_argument("--cleanup", action="store_true",
                   help="remove leftover namespaces, links and node "
                        "processes of the harness, then exit")
    p.add_argument("--scenario", choices=scenarios.SCENARIOS,
                   help="run one targeted reproduction instead of a test "
                        "(see docs/jepsen.md)")
    p.add_argument("--force", action="store_true",
                   help="with --cleanup: also those of runs still alive")
    p.add_argument("--no-netns", action="store_true",
                   help="run on 127.0.0.1 even as root (no partitions)")
    p.add_argument("--rate", type=float, default=50,
                   help="client operations per second, all clients "
                        "together (0: as fast as possible; default 50)")
    p.add_argument("--keys", type=int, default=5,
                   help="register keys r0..r(K-1) (default 5)")
    p.add_argument("--stale-fraction", type=float, default=0.1,
                   help="share of register reads that are stale reads")
    p.add_argument("--timeout", type=float, default=3.0,
                   help="client socket timeout in seconds (default 3)")
    p.add_argument("--set-retries", type=int, default=10,
                   help="set workload: CAS attempts per add (default 10)")
    p.add_argument("--fault-interval", default="5,15",
                   help="min,max seconds of a fault window (default 5,15)")
    p.add_argument("--heal-interval", default="5,10",
                   help="min,max seconds between windows (default 5,10)")
    p.add_argument("--election-timeout-ms", type=int, default=1000)
    p.add_argument("--heartbeat-timeout-ms", type=int, default=100)
    p.add_argument("--forward-timeout-ms", type=int, default=2000)
    p.add_argument("--snapshot-threshold", type=int, default=1024,
                   help="remsd --snapshot-threshold (and trailing); low, so "
                        "that snapshots are taken and sent under faults")
    p.add_argument("--log-level", default="info")
    p.add_argument("--lincheck-timeout", type=int, default=900)
    p.add_argument("--progress", type=float, default=5.0,
                   help="seconds between progress lines")
    return p.parse_args(argv)


def pair(text, name):
    try:
        a, b = (float(x) for x in text.split(","))
    except ValueError:
        raise HarnessError("%s: expected MIN,MAX, got %r" % (name, text))
    if not 0 < a <= b:
        raise HarnessError("%s: need 0 < MIN <= MAX" % name)
    return a, b


class Logger:
    def __init__(self):
        self.fh = None
        self.lock = threading.Lock()

    def open(self, path):
        self.fh = open(path, "a", encoding="utf-8")

    def __call__(self, msg):
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        with self.lock:
            print(line, flush=True)
            if self.fh:
                self.fh.write(line + "\n")
                self.fh.flush()

    def close(self):
        if self.fh:
            self.fh.close()
            self.fh = None


def start_watchdog(state, run_dir):
    logp = open(os.path.join(run_dir, "watchdog.log"), "ab")
    env = dict(os.environ)
    env["PYTHONPATH"] = JEPSEN_DIR + (":" + env["PYTHONPATH"]
                                      if env.get("PYTHONPATH") else "")
    p = subprocess.Popen([sys.executable, "-m", "remsjepsen.watchdog",
                          str(os.getpid()), state.path],
                         stdin=subprocess.DEVNULL, stdout=logp, stderr=logp,
                         start_new_session=True, env=env, cwd=JEPSEN_DIR)
    logp.close()
    state.update(watchdog={"pid": p.pid,
                           "start": netmod.proc_start_time(p.pid)})
    return p


def make_run_dir(store, name):
    stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
    base = os.path.join(store, name)
    os.makedirs(base, exist_ok=True)
    d = os.path.join(base, stamp)
    k = 1
    while os.path.exists(d):
        k += 1
        d = os.path.join(base, "%s-%d" % (stamp, k))
    os.makedirs(d)
    for link, target in ((os.path.join(base, "latest"),
                          os.path.basename(d)),
                         (os.path.join(store, "latest"),
                          os.path.join(name, os.path.basename(d)))):
        try:
            if os.path.islink(link):
                os.unlink(link)
            os.symlink(target, link)
        except OSError:
            pass
    return d


def build_info(remsd):
    """The remsd binary's sha256 and mtime, and the repository's HEAD."""
    import hashlib
    info = {}
    try:
        h = hashlib.sha256()
        with open(remsd, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        info["remsd_sha256"] = h.hexdigest()[:16]
        info["remsd_mtime"] = time.strftime(
            "%Y-%m-%dT%H:%M:%S", time.localtime(os.path.getmtime(remsd)))
    except OSError:
        pass
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short",
                            "HEAD"], capture_output=True, text=True,
                           timeout=10)
        if r.returncode == 0:
            info["git_head"] = r.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return info


def check_recovery(cluster, timeout):
    """After the heal: a ready leader, every node ready (/readyz 200) and
    every node a voter, within timeout seconds."""
    deadline = time.monotonic() + timeout
    last = {}
    while time.monotonic() < deadline:
        leader = cluster.wait_for_leader(max(0.5, deadline -
                                             time.monotonic()))
        if leader is None:
            break
        members = cluster.members(leader) or {}
        ready = {}
        for node in cluster.nodes:
            r = cluster.call(node, "GET", "/readyz", timeout=2)
            ready[node.name] = r.status
        voters = sorted(cluster.by_id[i].name for i, role in members.items()
                        if role == "voter" and i in cluster.by_id)
        last = {"leader": leader.name, "readyz": ready, "voters": voters}
        if all(s == 200 for s in ready.values()) and \
                len(voters) == len(cluster.nodes):
            last["valid"] = True
            last["seconds"] = round(timeout - (deadline - time.monotonic()),
                                    1)
            return last
        time.sleep(1.0)
    last["valid"] = False
    last["reason"] = "cluster not fully recovered %ds after the heal" \
        % timeout
    return last


def settle_commands(cluster, agents, history, opts, log):
    """After the heal: wait until no command is pending (or every issued
    command's deadline plus slack has passed), read the command log, stop
    the agents (SIGTERM) and read their logs."""
    deadlines = []
    for ev in history.events:
        if ev.get("f") == "command" and ev.get("type") == "invoke" and \
                isinstance(ev.get("wall_ms"), int):
            deadlines.append(ev["wall_ms"] + ev["value"]["ttl_ms"])
    until = max(deadlines + [time.time() * 1000]) + \
        opts.max_clock_skew_ms + opts.send_margin_ms + 30000
    settle = workloads.wait_commands_settled(cluster, until, log)
    log("commands: %s after %.1fs (%d polls)" % (
        "none pending" if settle["settled"] else
        "%d still pending" % len(settle["pending"] or []),
        settle["seconds"], settle["polls"]))
    command_log, err = workloads.read_command_log(cluster)
    if command_log is None:
        log("commands: could not read the command log: %s" % err)
    else:
        log("commands: %d in the command log" % len(command_log))
    agents.stop_all()
    return command_log, agents.read_logs(), settle


def log_errors(cluster, limit=20):
    """warn/error lines of the node logs (for the results)."""
    out = {}
    for node in cluster.nodes:
        lines = []
        try:
            with open(node.log_path, encoding="utf-8",
                      errors="replace") as fh:
                for line in fh:
                    if '"level":"error"' in line or \
                            '"event":"assertion_failed"' in line:
                        lines.append(line.strip()[:400])
        except OSError:
            pass
        if lines:
            out[node.name] = {"count": len(lines), "first": lines[:limit]}
    return out


def run_test(opts, log):
    nemeses = [] if opts.nemesis in ("", "none") else \
        [x.strip() for x in opts.nemesis.split(",") if x.strip()]
    for k in nemeses:
        if k not in nem.NEMESES:
            raise HarnessError("unknown nemesis %r (known: %s)"
                               % (k, ",".join(nem.NEMESES)))
    if opts.nodes < 1 or opts.nodes > 9:
        raise HarnessError("--nodes must be 1-9 (remsd allows 9 peers)")
    if opts.concurrency < 1:
        raise HarnessError("--concurrency must be at least 1")
    fault = pair(opts.fault_interval, "--fault-interval")
    heal = pair(opts.heal_interval, "--heal-interval")
    remsd = os.path.abspath(opts.remsd)
    if not os.access(remsd, os.X_OK):
        raise HarnessError("remsd not found or not executable: %s "
                           "(build it: cmake --build build)" % remsd)
    if opts.lincheck is None:
        lincheck = os.path.join(REPO, "build", "jepsen", "rems-lincheck")
    else:
        lincheck = os.path.abspath(opts.lincheck)
        if not os.access(lincheck, os.X_OK):
            raise HarnessError("rems-lincheck not found: %s" % lincheck)
    agent_bin = None
    if opts.workload == "commands":
        agent_bin = opts.agent_bin or os.path.join(
            os.path.dirname(os.path.dirname(remsd)), "agentproto",
            "rems-agent")
        agent_bin = os.path.abspath(agent_bin)
        if not os.access(agent_bin, os.X_OK):
            raise HarnessError("rems-agent not found or not executable: %s "
                               "(build it, or give --agent-bin)" % agent_bin)
        if not os.access(MAKE_TEST_CA, os.R_OK):
            raise HarnessError("%s not found" % MAKE_TEST_CA)
        try:
            lo, hi = (int(x) for x in opts.command_ttl.split(","))
        except ValueError:
            raise HarnessError("--command-ttl: expected MIN,MAX")
        if not 1 <= lo <= hi:
            raise HarnessError("--command-ttl: need 1 <= MIN <= MAX")
        acts = [x.strip() for x in opts.command_actions.split(",")
                if x.strip()]
        if not acts or any(a not in ("start", "stop", "restart")
                           for a in acts):
            raise HarnessError("--command-actions: any of start,stop,restart")
        if not 1 <= opts.services <= 20:
            raise HarnessError("--services must be 1-20")
    if opts.seed is None:
        opts.seed = random.SystemRandom().randrange(1, 2 ** 31)
    if "clock" in nemeses and faketime_lib() is None:
        raise HarnessError("the clock nemesis needs libfaketime "
                           "(apt-get install faketime)")

    use_netns = False
    why = "--no-netns"
    if not opts.no_netns:
        use_netns, why = netmod.netns_available()
    skipped = []
    if not use_netns:
        log("network namespaces unavailable (%s): running every node on "
            "127.0.0.1 with free ports; only kill, pause, clock and member "
            "can run" % why)
        if "partition" in nemeses:
            skipped.append("partition")
            log("nemesis partition: skipped (needs network namespaces)")
    name = opts.name or "%s-%s-n%d" % (opts.workload,
                                       "+".join(nemeses) or "none",
                                       opts.nodes)
    store = os.path.abspath(opts.store)
    live = netmod.cleanup_leftovers(log=log)
    run = netmod.pick_run_number(live)
    state = netmod.StateFile(run, "netns" if use_netns else "local")
    run_dir = make_run_dir(store, name)
    log.open(os.path.join(run_dir, "harness.log"))
    start_watchdog(state, run_dir)
    names = ["n%d" % i for i in range(1, opts.nodes + 1)]
    net = netmod.make_network(run, names, state, use_netns)
    # Run a private copy: another build may replace the binary while the
    # test runs, and restarted nodes would then run different code.
    os.makedirs(os.path.join(run_dir, "bin"), exist_ok=True)
    remsd_copy = os.path.join(run_dir, "bin", "remsd")
    shutil.copy2(remsd, remsd_copy)
    cluster = Cluster(net, opts.nodes, remsd_copy, run_dir, state, opts,
                      log)
    agents = None
    services = ["s%d" % i for i in range(1, opts.services + 1)]
    if opts.workload == "commands":
        agents = agentsmod.Agents(cluster, net, run_dir, state,
                                  os.path.join(run_dir, "bin", "rems-agent"),
                                  os.path.join(run_dir, "certs"), services,
                                  log)
    clients = []
    stop_clients = threading.Event()
    nemesis = None
    history = None
    try:
        log("test %s, seed %d, run %d (%s), store %s" % (
            name, opts.seed, run, net.mode, run_dir))
        log("command: jepsen/run %s" % " ".join(sys.argv[1:]))
        binfo = build_info(remsd)
        log("remsd %s (sha256 %s, built %s), repository at %s" % (
            remsd, binfo.get("remsd_sha256"), binfo.get("remsd_mtime"),
            binfo.get("git_head")))
        if agents is not None:
            shutil.copy2(agent_bin, agents.bin)
            cluster.agent_tls = agentsmod.make_certs(
                MAKE_TEST_CA, agents.certs_dir, agents.ids,
                os.path.join(run_dir, "certs.log"))
        net.setup()
        if use_netns:
            log("bridge %s 10.77.%d.1/24, nodes %s" % (
                net.bridge, run, " ".join("%s=%s" % (n, net.ip[n])
                                          for n in names)))
        for node in cluster.nodes:
            cluster.start(node)
        leader = cluster.wait_for_leader(60)
        if leader is None:
            raise HarnessError("no leader elected within 60 s of start; see "
                               "the node logs in %s" % run_dir)
        log("cluster up, leader %s" % leader.name)
        if agents is not None:
            agents.write_configs()
            agents.start_all()
            view, ok = agents.wait_online(60)
            if not ok:
                raise HarnessError("agents not all online 60 s after their "
                                   "start (leader's view: %s); see the "
                                   "a*.log files in %s" % (view, run_dir))
            log("agents %s online (rems-agent %s, services %s)" % (
                " ".join(agents.ids), agent_bin, " ".join(services)))

        history = History(os.path.join(run_dir, "history.jsonl"),
                          os.path.join(run_dir, "history.edn"))
        cluster.start_monitor(history)
        if agents is not None:
            agents.start_monitor(history)
        active_nemeses = [k for k in nemeses if k not in skipped]
        schedule = nem.make_schedule(opts.seed, active_nemeses, opts.time,
                                     fault=fault, heal=heal)
        with open(os.path.join(run_dir, "schedule.json"), "w") as fh:
            json.dump(schedule, fh, indent=1)
        nemesis = nem.Nemesis(cluster, net, history, schedule, log, run_dir,
                              skipped=skipped)
        counters = workloads.Counters()
        clients = workloads.make_clients(opts.workload, cluster, history,
                                         opts, stop_clients, counters,
                                         "%d-%d" % (opts.seed, run),
                                         agents=agents.ids if agents
                                         else (), services=services)
        nemesis.start()
        for c in clients:
            c.start()
        t_end = opts.time
        next_progress = 0.0
        while True:
            el = history.now() / 1e9
            if el >= t_end:
                break
            if el >= next_progress:
                c = counters.snapshot()
                ld = cluster.leader()
                log("[%5.0fs] ops ok=%d fail=%d info=%d | nemesis: %s | "
                    "leader: %s" % (el, c["ok"], c["fail"], c["info"],
                                    nemesis.describe_active(),
                                    "%s (term %d)" % (ld.name,
                                                      cluster.leader_term())
                                    if ld else "none"))
                next_progress += opts.progress
            time.sleep(min(0.2, max(0.01, t_end - el)))
        log("time is up: stopping clients and healing")
        stop_clients.set()
        for c in clients:
            c.join(timeout=60)
        nemesis.stop()
        repaired = nem.heal_all(cluster, net, nemesis, log)
        if repaired:
            log("heal: " + "; ".join(repaired))
        recovery = check_recovery(cluster, 90)
        log("recovery: %s" % ("ok in %ss" % recovery.get("seconds")
                              if recovery["valid"] else recovery["reason"]))
        final = None
        reader = workloads.FinalReader(cluster, history, FINAL_PROCESS_BASE)
        command_log = agent_logs = settle = None
        if opts.workload == "register":
            reader.register(["r%d" % i for i in range(opts.keys)])
        elif opts.workload == "set":
            final = reader.set()
        else:
            command_log, agent_logs, settle = settle_commands(
                cluster, agents, history, opts, log)
        cluster.stop_monitor()
        history.close()
        c = counters.snapshot()
        log("workload done: ok=%d fail=%d info=%d" % (c["ok"], c["fail"],
                                                      c["info"]))

        # -- check ---------------------------------------------------------
        events = history.events
        results = {"checkers": {}}
        chk = results["checkers"]
        if opts.workload == "register":
            log("checking linearizability with %s" % lincheck)
            chk["linearizable"] = checkers.check_linearizable(
                lincheck, os.path.join(run_dir, "history.jsonl"),
                os.path.join(run_dir, "lincheck.json"),
                opts.lincheck_timeout, events=events, log=log)
        elif opts.workload == "set":
            chk["set"] = checkers.check_set(events, final)
            chk["set"]["final_read_errors"] = final.get("errors", [])
        else:
            chk["commands"] = checkers.check_commands(
                events, command_log, agent_logs,
                skew_ms=opts.max_clock_skew_ms,
                margin_ms=opts.send_margin_ms,
                allowance_ms=opts.deadline_allowance_ms,
                wall_base_ns=history.t0_wall_ns, settle=settle)
            with open(os.path.join(run_dir, "commands.json"), "w") as fh:
                json.dump(command_log, fh, indent=0)
        chk["leader-per-term"] = checkers.check_leaders(
            checkers.read_logs(run_dir, names),
            sorted(cluster.leader_claims))
        chk["stale-reads-monotonic"] = checkers.check_stale_reads(events)
        chk["unexpected-responses"] = {
            "valid": not counters.unexpected,
            "count": len(counters.unexpected),
            "first": counters.unexpected[:20]}
        crashes = cluster.crashes + (agents.crashes if agents else [])
        chk["crashes"] = {"valid": not crashes, "count": len(crashes),
                          "crashes": crashes}
        chk["recovery"] = recovery
        verdict = checkers.combine(chk)
        ops = checkers.op_counts(events)
        nem_counts = {}
        for ev in events:
            if ev.get("process") == "nemesis":
                nem_counts[ev["f"]] = nem_counts.get(ev["f"], 0) + 1
        results.update({
            "valid": verdict is True,
            "verdict": verdict,
            "unknown": sorted(k for k, v in chk.items()
                              if v.get("valid") == "unknown"),
            "skipped": sorted(k for k, v in chk.items()
                              if v.get("valid") == "skipped"),
            "invalid": sorted(k for k, v in chk.items()
                              if v.get("valid") is False),
            "test": {"name": name, "seed": opts.seed, "nodes": opts.nodes,
                     "time": opts.time, "workload": opts.workload,
                     "concurrency": opts.concurrency, "rate": opts.rate,
                     "nemesis": nemeses, "skipped_nemeses": skipped,
                     "mode": net.mode, "remsd": remsd, "lincheck": lincheck,
                     "harness_version": VERSION, "build": binfo,
                     "argv": sys.argv[1:],
                     "history_t0_wall_ns": history.t0_wall_ns,
                     "agents": {"bin": agent_bin, "ids": agents.ids,
                                "services": services,
                                "actions": opts.command_actions,
                                "ttl_ms": opts.command_ttl,
                                "lease_ttl_ms": opts.lease_ttl_ms,
                                "agent_heartbeat_ms":
                                    opts.agent_heartbeat_ms,
                                "max_clock_skew_ms": opts.max_clock_skew_ms,
                                "send_margin_ms": opts.send_margin_ms}
                     if agents else None,
                     "duration_s": round(events[-1]["time"] / 1e9, 1)
                     if events else 0},
            "ops": ops,
            "nemesis": {"events": nem_counts, "windows": nemesis.stats,
                        "errors": nemesis.errors,
                        "scheduled": len(schedule)},
            "heal": repaired,
            "leader_changes": len(report.leader_segments(
                cluster.leader_samples, history.now())),
            "node_log_errors": log_errors(cluster),
        })
        with open(os.path.join(run_dir, "results.json"), "w") as fh:
            json.dump(results, fh, indent=1, default=str)
        rows = [("verdict", verdict), ("seed", opts.seed),
                ("nodes", opts.nodes), ("workload", opts.workload),
                ("nemesis", ",".join(nemeses) or "none"),
                ("ops", "%d invoked: %d ok, %d fail, %d info" % (
                    ops["invoked"], ops["ok"], ops["fail"], ops["info"]))]
        for k, v in chk.items():
            rows.append(("checker " + k, v.get("valid")))
        try:
            report.timeline_html(events, cluster.leader_samples,
                                 opts.concurrency,
                                 {"title": "%s (seed %d)" % (name, opts.seed),
                                  "rows": rows},
                                 os.path.join(run_dir, "timeline.html"),
                                 final_process_base=FINAL_PROCESS_BASE)
            report.latency_svg(events, os.path.join(run_dir, "latency.svg"),
                               title="%s seed %d: latency" % (name,
                                                              opts.seed))
        except Exception as e:  # noqa: BLE001 - the verdict matters more
            log("report failed: %s" % e)
        for k, v in chk.items():
            extra = ""
            if k == "linearizable":
                extra = v.get("reason") or v.get("stdout", "")[-300:]
            elif k == "set":
                extra = "acknowledged %d, lost %d reads, unexpected %d" % (
                    v.get("acknowledged", 0), len(v.get("lost", {})),
                    len(v.get("unexpected", {})))
            elif k == "stale-reads-monotonic":
                extra = "%d stale reads, %d violations" % (
                    v.get("stale_reads", 0), v.get("violation_count", 0))
            elif k == "leader-per-term":
                extra = "%d terms with a leader, %d violations" % (
                    v.get("terms_with_leader", 0), len(v.get("violations",
                                                             [])))
            elif k == "crashes":
                extra = "%d" % v.get("count", 0)
            elif k == "commands":
                extra = "%d posted, %d in the log, %d started; " \
                    "violations %s; counted %s" % (
                        v.get("posted", 0),
                        v.get("log", {}).get("commands", 0),
                        v.get("started", 0),
                        {a: b for a, b in v.get("violations", {}).items()
                         if b} or "none",
                        {a: b for a, b in v.get("counted", {}).items()
                         if b} or "none")
            log("checker %-22s %s %s" % (k + ":", v.get("valid"),
                                         extra.strip().replace("\n", " ")))
        log("ops: %d invoked, %d ok, %d fail, %d info; artifacts in %s"
            % (ops["invoked"], ops["ok"], ops["fail"], ops["info"], run_dir))
        if verdict == "unknown":
            log("some checkers could not decide (%s): not valid"
                % ", ".join(results["unknown"]))
        return verdict is True
    finally:
        # A second Ctrl-C must not cut the cleanup short (the watchdog
        # would finish it, but without stopping the nodes cleanly).
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        stop_clients.set()
        if nemesis is not None:
            nemesis.stop_ev.set()
        try:
            cluster.stop_monitor()
        except Exception:  # noqa: BLE001
            pass
        if history is not None:
            history.close()
        if agents is not None:
            agents.stop_all()
        cluster.stop_all()
        try:
            net.teardown()
        except Exception as e:  # noqa: BLE001
            log("teardown: %s" % e)
        state.remove()
        if not opts.keep:
            shutil.rmtree(os.path.join(run_dir, "data"), ignore_errors=True)
            shutil.rmtree(os.path.join(run_dir, "bin"), ignore_errors=True)
            shutil.rmtree(os.path.join(run_dir, "certs"), ignore_errors=True)
        for node in cluster.nodes:
            try:
                os.unlink(os.path.join(run_dir, "faketime-%s" % node.name))
            except OSError:
                pass


def run_one_scenario(opts, log):
    remsd = os.path.abspath(opts.remsd)
    if not os.access(remsd, os.X_OK):
        raise HarnessError("remsd not found or not executable: %s" % remsd)
    use_netns, why = (False, "--no-netns") if opts.no_netns else \
        netmod.netns_available()
    if not use_netns:
        log("network namespaces unavailable (%s): 127.0.0.1" % why)
    live = netmod.cleanup_leftovers(log=log)
    run = netmod.pick_run_number(live)
    state = netmod.StateFile(run, "netns" if use_netns else "local")
    run_dir = make_run_dir(os.path.abspath(opts.store),
                           "scenario-" + opts.scenario)
    log.open(os.path.join(run_dir, "harness.log"))
    start_watchdog(state, run_dir)
    log("scenario %s, run %d, store %s" % (opts.scenario, run, run_dir))
    try:
        res = scenarios.run_scenario(opts.scenario, opts, log, run_dir,
                                     state, use_netns, remsd)
    finally:
        state.remove()
        if not opts.keep:
            shutil.rmtree(os.path.join(run_dir, "data"), ignore_errors=True)
    log("scenario %s: %s" % (opts.scenario,
                             "as documented" if res["valid"]
                             else "PROBLEM REPRODUCED"))
    return res["valid"]


def _sigterm(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    log = Logger()
    if opts.cleanup:
        live = netmod.cleanup_leftovers(force=opts.force, log=log)
        if live:
            log("left alone: runs %s still running (use --force)"
                % ", ".join(map(str, sorted(live))))
        log("cleanup done")
        return 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _sigterm)
    try:
        ok = run_one_scenario(opts, log) if opts.scenario else \
            run_test(opts, log)
    except KeyboardInterrupt:
        log("aborted: cleaned up; no verdict")
        print("valid: unknown (aborted)")
        return 2
    except HarnessError as e:
        log("harness error: %s" % e)
        print("valid: unknown (harness error)")
        return 2
    except Exception:  # noqa: BLE001
        log("harness error:\n" + traceback.format_exc())
        print("valid: unknown (harness error)")
        return 2
    finally:
        log.close()
    print("valid: %s" % ("true" if ok else "false"))
    return 0 if ok else 1

