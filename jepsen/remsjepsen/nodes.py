"""The remsd processes of a test cluster.

Each node ``n<i>`` has id i, its own data directory ``<run>/data/n<i>`` and
log ``<run>/n<i>.log`` (stderr, appended across restarts). In namespace mode
it runs as ``ip netns exec rjXni env ... remsd ...``, which execs, so the
pid we hold is remsd's own. Nodes run in their own session (setsid) so that
a Ctrl-C at the terminal reaches only the harness.

The Cluster also runs a monitor thread that polls every node's /status once a
second (leader per time for the timeline and for leader-targeted faults) and
notices node processes that exit when nobody asked them to (crashes).
"""

import os
import shutil
import signal
import subprocess
import threading
import time

from . import api

FAKETIME_DIR = "/usr/lib/x86_64-linux-gnu/faketime"


def faketime_lib():
    """libfaketimeMT (thread-safe; remsd runs libuv worker threads) when
    present, else libfaketime."""
    for name in ("libfaketimeMT.so.1", "libfaketime.so.1"):
        p = os.path.join(FAKETIME_DIR, name)
        if os.path.exists(p):
            return p
    return None


def faketime_env(clock, tsfile=None):
    """Environment for a node under libfaketime.

    clock: {"mode": "bump", "offset": s} | {"mode": "strobe", "delta": s}
           | {"mode": "rate", "factor": f}

    bump and strobe fake only the wall clock (FAKETIME_DONT_FAKE_MONOTONIC):
    raft's timers run on CLOCK_MONOTONIC, which never jumps on a real machine
    either; the offset shows in the entries' time_ms, the audit trail and
    the logs. strobe rewrites the offset file every second (+delta, -delta,
    ...), re-read once a second (FAKETIME_CACHE_DURATION=1). rate changes
    the clock's speed, monotonic clock included, so the node's timers
    (heartbeats, election timeouts) run fast or slow.
    """
    lib = faketime_lib()
    if lib is None:
        raise RuntimeError("libfaketime not found in " + FAKETIME_DIR)
    env = {"LD_PRELOAD": lib}
    mode = clock["mode"]
    if mode == "bump":
        env["FAKETIME"] = "%+ds" % int(clock["offset"])
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        env["DONT_FAKE_MONOTONIC"] = "1"
    elif mode == "strobe":
        env["FAKETIME_TIMESTAMP_FILE"] = tsfile
        env["FAKETIME_CACHE_DURATION"] = "1"
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        env["DONT_FAKE_MONOTONIC"] = "1"
    elif mode == "rate":
        env["FAKETIME"] = "+0 x%g" % clock["factor"]
    else:
        raise ValueError("unknown clock mode %r" % mode)
    return env


class Node:
    def __init__(self, index, name):
        self.index = index
        self.id = index
        self.name = name
        self.host = None
        self.raft_port = None
        self.api_port = None
        self.agent_port = None
        self.data_dir = None
        self.log_path = None
        self.proc = None
        self.paused = False
        self.clock = None          # faketime settings while skewed
        self.tsfile = None         # the strobe's offset file
        self.joined = False        # restarted with --join (after a wipe)
        self.join_via = None
        self.fault = None          # the nemesis holding this node
        self.expect_exit = False
        self.wipes = 0
        self.starts = 0
        self.crash_restarts = 0

    @property
    def raft_address(self):
        return "%s:%d" % (self.host, self.raft_port)

    @property
    def api_address(self):
        return "%s:%d" % (self.host, self.api_port)

    @property
    def agent_address(self):
        return "%s:%d" % (self.host, self.agent_port)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Cluster:
    def __init__(self, net, n, remsd, run_dir, state, opts, log):
        self.net = net
        self.remsd = remsd
        self.run_dir = run_dir
        self.state = state
        self.opts = opts
        self.log = log
        self.lock = threading.RLock()
        self.nodes = []
        for i in range(1, n + 1):
            node = Node(i, "n%d" % i)
            node.host = net.host(node.name)
            node.raft_port = net.raft_port(node.name)
            node.api_port = net.api_port(node.name)
            node.agent_port = net.agent_port(node.name)
            node.data_dir = os.path.join(run_dir, "data", node.name)
            node.log_path = os.path.join(run_dir, node.name + ".log")
            self.nodes.append(node)
        self.by_name = {x.name: x for x in self.nodes}
        self.by_id = {x.id: x for x in self.nodes}
        self.names = [x.name for x in self.nodes]
        self.crashes = []
        self.leader_samples = []   # (time_ns, leader name or None, term)
        self.leader_claims = set()  # (term, node id) seen in /status
        self._leader = (None, 0)
        self._monitor_stop = threading.Event()
        self._monitor = None
        self.history = None
        self.max_faulted = max(0, (n - 1) // 2)
        self.closing = False
        # With agents (the commands workload): {"cert", "key", "ca"} of the
        # nodes' agent listeners; None: no listener.
        self.agent_tls = None

    # -- processes -------------------------------------------------------

    def cmdline(self, node):
        args = [self.remsd, "--node-id", str(node.id),
                "--data-dir", node.data_dir,
                "--raft-address", node.raft_address,
                "--api-address", node.api_address,
                "--election-timeout-ms", str(self.opts.election_timeout_ms),
                "--heartbeat-timeout-ms", str(self.opts.heartbeat_timeout_ms),
                "--forward-timeout-ms", str(self.opts.forward_timeout_ms),
                "--snapshot-threshold", str(self.opts.snapshot_threshold),
                "--snapshot-trailing", str(self.opts.snapshot_threshold),
                "--log-level", self.opts.log_level]
        if self.agent_tls:
            args += ["--agent-address", node.agent_address,
                     "--tls-cert", self.agent_tls["cert"],
                     "--tls-key", self.agent_tls["key"],
                     "--tls-ca", self.agent_tls["ca"],
                     "--lease-ttl-ms", str(self.opts.lease_ttl_ms),
                     "--agent-heartbeat-ms",
                     str(self.opts.agent_heartbeat_ms),
                     "--max-clock-skew-ms", str(self.opts.max_clock_skew_ms),
                     "--send-margin-ms", str(self.opts.send_margin_ms)]
        if node.joined:
            args += ["--join", node.join_via]
        else:
            for m in self.nodes:
                args += ["--peer", "%d=%s,%s" % (m.id, m.raft_address,
                                                 m.api_address)]
        return args

    def start(self, node, clock=None, tsfile=None):
        with self.lock:
            if self.closing:
                raise RuntimeError("not starting %s: the harness is "
                                   "shutting down" % node.name)
            if node.running:
                raise RuntimeError("%s is already running" % node.name)
            os.makedirs(os.path.dirname(node.data_dir), exist_ok=True)
            env_args = []
            if clock:
                env_args = ["%s=%s" % kv for kv in
                            sorted(faketime_env(clock, tsfile).items())]
            # env execs remsd with SIGTERM/SIGINT/SIGHUP at their default
            # action: the harness may ignore them while it shuts down, and
            # an ignored disposition survives exec.
            args = self.net.exec_prefix(node.name) + \
                ["env", "--default-signal=TERM,INT,HUP"] + env_args + \
                self.cmdline(node)
            logfh = open(node.log_path, "ab")
            try:
                node.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=logfh,
                    stderr=logfh, cwd=self.run_dir, start_new_session=True)
            finally:
                logfh.close()
            node.paused = False
            node.clock = clock
            node.tsfile = tsfile
            node.expect_exit = False
            node.starts += 1
            self.state.add_pid(node.proc.pid)

    def _reap(self, node, timeout):
        p = node.proc
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        self.state.remove_pid(p.pid)
        return True

    def kill(self, node):
        """SIGKILL and wait."""
        with self.lock:
            if not node.running:
                return
            node.expect_exit = True
            try:
                os.kill(node.proc.pid, signal.SIGKILL)
            except OSError:
                pass
        self._reap(node, 10)
        node.paused = False

    def stop(self, node, timeout=10):
        """SIGTERM (SIGCONT first when paused), SIGKILL after timeout."""
        with self.lock:
            if not node.running:
                return
            node.expect_exit = True
            try:
                os.kill(node.proc.pid, signal.SIGTERM)
                if node.paused:
                    os.kill(node.proc.pid, signal.SIGCONT)
            except OSError:
                pass
        if not self._reap(node, timeout):
            self.log("%s did not stop in %ds after SIGTERM; SIGKILL"
                     % (node.name, timeout))
            self.kill(node)
        node.paused = False

    def pause(self, node):
        with self.lock:
            if node.running:
                os.kill(node.proc.pid, signal.SIGSTOP)
                node.paused = True

    def resume(self, node):
        with self.lock:
            if node.running and node.paused:
                os.kill(node.proc.pid, signal.SIGCONT)
            node.paused = False

    def wipe(self, node):
        """Delete (or with --keep, move aside) the node's data directory."""
        node.wipes += 1
        if not os.path.exists(node.data_dir):
            return
        if self.opts.keep:
            os.rename(node.data_dir, "%s.wiped-%d" % (node.data_dir,
                                                      node.wipes))
        else:
            shutil.rmtree(node.data_dir, ignore_errors=True)

    def stop_all(self):
        """Stop every node; no node can be started afterwards."""
        with self.lock:
            self.closing = True
        for node in self.nodes:
            try:
                if node.running:
                    self.stop(node, timeout=5)
            except Exception as e:  # noqa: BLE001
                self.log("stopping %s: %s" % (node.name, e))

    # -- API -------------------------------------------------------------

    def call(self, node, method, path, body=None, headers=None, timeout=3.0):
        return api.call(node.host, node.api_port, method, path, body=body,
                        headers=headers, timeout=timeout)

    def status(self, node, timeout=1.0):
        if node.paused or not node.running:
            return None
        r = self.call(node, "GET", "/status", timeout=timeout)
        return r.body if r.ok and isinstance(r.body, dict) else None

    def members(self, node, timeout=3.0):
        """{id: role} from node's /v1/members, or None."""
        r = self.call(node, "GET", "/v1/members", timeout=timeout)
        if not r.ok or not isinstance(r.body, dict):
            return None
        return {int(m["id"]): m.get("role")
                for m in r.body.get("members", [])}

    def live_nodes(self):
        return [x for x in self.nodes if x.running and not x.paused]

    def find_leader(self, timeout=0.5):
        """Ask every live node; the ready leader with the highest term."""
        best = None
        for node in self.live_nodes():
            st = self.status(node, timeout=timeout)
            if st and st.get("role") == "leader":
                self.leader_claims.add((st.get("term", 0),
                                        str(st.get("node_id", node.id))))
                if best is None or st.get("term", 0) > best[1]:
                    best = (node, st.get("term", 0), st)
        return best

    def wait_for_leader(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = self.find_leader()
            if b and b[2].get("leader_ready"):
                return b[0]
            time.sleep(0.25)
        return None

    def leader(self):
        """The leader as last seen by the monitor (a Node or None)."""
        name = self._leader[0]
        return self.by_name.get(name) if name else None

    def leader_term(self):
        return self._leader[1]

    # -- faults bookkeeping ----------------------------------------------

    def claim(self, kind, rng, prefer=None, allow_majority=False):
        """Give a node to one process-level fault at a time. At most a
        minority of the nodes are held at once (kill, pause, clock, member
        together), so the cluster can keep a quorum unless a partition cuts
        it. prefer: a node to take if free (the leader). Returns the node
        or None."""
        with self.lock:
            held = [x for x in self.nodes if x.fault]
            if not allow_majority and len(held) >= self.max_faulted:
                return None
            free = [x for x in self.nodes if x.fault is None and x.running]
            if not free:
                return None
            if prefer is not None and prefer in free:
                node = prefer
            else:
                node = free[rng.randrange(len(free))]
            node.fault = kind
            return node

    def release(self, node):
        with self.lock:
            node.fault = None

    def faults(self):
        with self.lock:
            return {x.name: x.fault for x in self.nodes if x.fault}

    # -- monitor ---------------------------------------------------------

    def start_monitor(self, history):
        self.history = history
        self._monitor = threading.Thread(target=self._monitor_loop,
                                         name="monitor", daemon=True)
        self._monitor.start()

    def stop_monitor(self):
        self._monitor_stop.set()
        if self._monitor:
            self._monitor.join(timeout=10)

    def _check_crashes(self):
        with self.lock:
            for node in self.nodes:
                p = node.proc
                if p is None or node.expect_exit:
                    continue
                rc = p.poll()
                if rc is None:
                    continue
                t = self.history.now() if self.history else 0
                self.crashes.append({"node": node.name, "exit": rc,
                                     "time": t})
                self.log("!! %s exited unexpectedly (exit %s); see %s"
                         % (node.name, rc, node.log_path))
                self.state.remove_pid(p.pid)
                node.expect_exit = True
                # Keep the test going: start it again, a few times at most,
                # unless a fault holds it (its nemesis restarts it).
                if node.fault is None and node.crash_restarts < 5:
                    node.crash_restarts += 1
                    self.log("restarting %s after its crash" % node.name)
                    try:
                        self.start(node, clock=node.clock, tsfile=node.tsfile)
                    except Exception as e:  # noqa: BLE001
                        self.log("restart of %s failed: %s" % (node.name, e))

    def _monitor_loop(self):
        while not self._monitor_stop.wait(1.0):
            try:
                self._check_crashes()
                t = self.history.now()
                b = self.find_leader(timeout=0.5)
                if b:
                    self._leader = (b[0].name, b[1])
                    self.leader_samples.append((t, b[0].name, b[1]))
                else:
                    self._leader = (None, self._leader[1])
                    self.leader_samples.append((t, None, 0))
            except Exception as e:  # noqa: BLE001
                self.log("monitor: %s" % e)

    def restart_crashed(self):
        """Start again nodes that crashed (after their crash was noted)."""
        for node in self.nodes:
            if node.proc is not None and not node.running and \
                    node.fault is None:
                self.log("restarting %s" % node.name)
                self.start(node)
