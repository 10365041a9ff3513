"""The rems-agent processes of the commands workload.

One agent per node: agent ``a<i>`` runs inside node i's network namespace
(``net.exec_prefix``), so a partition that cuts node i off also cuts its
agent off from the nodes on the other side. Every agent knows every node's
agent listener (``endpoints``) and checks the nodes' certificate against the
name ``node1.rems.test`` (``tls.server_name``): every node presents the same
test certificate, made at the start of the run by tests/lib/make-test-ca.sh,
which also makes one client certificate per agent (CN ``a<i>``).

Each agent has its own data directory ``<run>/data/a<i>`` (its fence), its
configuration ``<run>/a<i>.yaml`` and its log ``<run>/a<i>.log`` (JSON lines
on stderr, appended across restarts). Its services ``s1``, ``s2``, ... are
not started at start (``autostart: false``); each is a shell that lives as
long as the agent that spawned it (``kill -0 $PPID``), so that no service
outlives an agent that was SIGKILLed by a cleanup.

The nemeses never touch the agents. Their pids are in the run's state file,
like the nodes', so the watchdog kills them when the harness dies; at the end
of a run they get SIGTERM (which stops their services). An agent that exits
on its own is a crash: recorded, and started again (5 times at most).
"""

import json
import os
import signal
import subprocess
import threading
import time

SERVER_NAME = "node1.rems.test"
SERVICE_COMMAND = ["/bin/sh", "-c",
                   "while kill -0 $PPID 2>/dev/null; do sleep 1; done"]


def make_certs(script, out_dir, agent_ids, log_path):
    """Run make-test-ca.sh into out_dir with a client certificate for every
    agent id. Returns {"cert", "key", "ca"} of the nodes."""
    env = dict(os.environ)
    env["REMS_TEST_AGENTS"] = " ".join(agent_ids)
    with open(log_path, "ab") as fh:
        r = subprocess.run(["sh", script, out_dir], env=env, stdout=fh,
                           stderr=fh, stdin=subprocess.DEVNULL, timeout=300)
    if r.returncode != 0:
        raise RuntimeError("%s %s failed (exit %d); see %s"
                           % (script, out_dir, r.returncode, log_path))
    return {"cert": os.path.join(out_dir, "node1.pem"),
            "key": os.path.join(out_dir, "node1.key"),
            "ca": os.path.join(out_dir, "ca.pem")}


def yaml_str(s):
    """A YAML double-quoted scalar (JSON's escaping is valid YAML)."""
    return json.dumps(str(s))


def agent_yaml(agent_id, endpoints, certs_dir, data_dir, services,
               log_level="info"):
    lines = ["id: %s" % agent_id, "endpoints:"]
    lines += ["  - %s" % yaml_str(e) for e in endpoints]
    lines += ["tls:",
              "  cert: %s" % yaml_str(os.path.join(certs_dir,
                                                   agent_id + ".pem")),
              "  key: %s" % yaml_str(os.path.join(certs_dir,
                                                  agent_id + ".key")),
              "  ca: %s" % yaml_str(os.path.join(certs_dir, "ca.pem")),
              "  server_name: %s" % SERVER_NAME,
              "data_dir: %s" % yaml_str(data_dir),
              "labels: {harness: jepsen}",
              "reconnect: {initial_ms: 100, max_ms: 1000, "
              "connect_timeout_ms: 2000}",
              "log_level: %s" % log_level,
              "services:"]
    for name in services:
        lines += ["  - name: %s" % name,
                  "    command: [%s]" % ", ".join(yaml_str(x) for x in
                                                  SERVICE_COMMAND),
                  "    autostart: false",
                  "    stop_timeout_ms: 2000"]
    return "\n".join(lines) + "\n"


class Agent:
    def __init__(self, index, node):
        self.index = index
        self.id = "a%d" % index
        self.node = node          # the Node whose namespace it runs in
        self.data_dir = None
        self.config = None
        self.log_path = None
        self.proc = None
        self.expect_exit = False
        self.starts = 0
        self.crash_restarts = 0

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None


class Agents:
    def __init__(self, cluster, net, run_dir, state, agent_bin, certs_dir,
                 services, log):
        self.cluster = cluster
        self.net = net
        self.run_dir = run_dir
        self.state = state
        self.bin = agent_bin
        self.certs_dir = certs_dir
        self.services = list(services)
        self.log = log
        self.lock = threading.RLock()
        self.agents = [Agent(node.index, node) for node in cluster.nodes]
        self.by_id = {a.id: a for a in self.agents}
        self.ids = [a.id for a in self.agents]
        self.crashes = []
        self.closing = False
        self.history = None
        self._stop = threading.Event()
        self._thread = None
        for a in self.agents:
            a.data_dir = os.path.join(run_dir, "data", a.id)
            a.config = os.path.join(run_dir, a.id + ".yaml")
            a.log_path = os.path.join(run_dir, a.id + ".log")

    def write_configs(self):
        endpoints = [n.agent_address for n in self.cluster.nodes]
        for a in self.agents:
            with open(a.config, "w") as fh:
                fh.write(agent_yaml(a.id, endpoints, self.certs_dir,
                                    a.data_dir, self.services))

    def start(self, a):
        with self.lock:
            if self.closing:
                raise RuntimeError("not starting %s: the harness is "
                                   "shutting down" % a.id)
            if a.running:
                raise RuntimeError("%s is already running" % a.id)
            os.makedirs(os.path.dirname(a.data_dir), exist_ok=True)
            args = self.net.exec_prefix(a.node.name) + \
                ["env", "--default-signal=TERM,INT,HUP", self.bin,
                 "--config", a.config]
            logfh = open(a.log_path, "ab")
            try:
                a.proc = subprocess.Popen(
                    args, stdin=subprocess.DEVNULL, stdout=logfh,
                    stderr=logfh, cwd=self.run_dir, start_new_session=True)
            finally:
                logfh.close()
            a.expect_exit = False
            a.starts += 1
            self.state.add_pid(a.proc.pid)

    def start_all(self):
        for a in self.agents:
            self.start(a)

    def stop(self, a, timeout=10):
        """SIGTERM (the agent stops its services), SIGKILL after timeout."""
        with self.lock:
            if not a.running:
                return
            a.expect_exit = True
            try:
                os.kill(a.proc.pid, signal.SIGTERM)
            except OSError:
                pass
        try:
            a.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.log("%s did not stop in %ds after SIGTERM; SIGKILL"
                     % (a.id, timeout))
            try:
                os.kill(a.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                a.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                return
        self.state.remove_pid(a.proc.pid)

    def stop_all(self):
        """Stop every agent; none can be started afterwards."""
        with self.lock:
            self.closing = True
        self.stop_monitor()
        for a in self.agents:
            try:
                self.stop(a, timeout=15)
            except Exception as e:  # noqa: BLE001
                self.log("stopping %s: %s" % (a.id, e))

    # -- crashes -----------------------------------------------------------

    def start_monitor(self, history):
        self.history = history
        self._thread = threading.Thread(target=self._monitor_loop,
                                        name="agents", daemon=True)
        self._thread.start()

    def stop_monitor(self):
        self._stop.set()
        if self._thread is not None and \
                self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def check_crashes(self):
        with self.lock:
            for a in self.agents:
                p = a.proc
                if p is None or a.expect_exit or self.closing:
                    continue
                rc = p.poll()
                if rc is None:
                    continue
                t = self.history.now() if self.history else 0
                self.crashes.append({"agent": a.id, "exit": rc, "time": t})
                self.log("!! agent %s exited unexpectedly (exit %s); see %s"
                         % (a.id, rc, a.log_path))
                self.state.remove_pid(p.pid)
                a.expect_exit = True
                if a.crash_restarts < 5:
                    a.crash_restarts += 1
                    self.log("restarting agent %s after its crash" % a.id)
                    try:
                        self.start(a)
                    except Exception as e:  # noqa: BLE001
                        self.log("restart of %s failed: %s" % (a.id, e))

    def _monitor_loop(self):
        while not self._stop.wait(1.0):
            try:
                self.check_crashes()
            except Exception as e:  # noqa: BLE001
                self.log("agent monitor: %s" % e)

    # -- the cluster's view ------------------------------------------------

    def online(self, timeout=3.0):
        """{agent id: online} from a ready leader's GET /v1/agents, or
        None."""
        b = self.cluster.find_leader(timeout=1.0)
        if not b:
            return None
        r = self.cluster.call(b[0], "GET", "/v1/agents?limit=1000",
                              timeout=timeout)
        if r.status != 200 or not isinstance(r.body, dict):
            return None
        return {x.get("id"): bool(x.get("online"))
                for x in r.body.get("items", [])}

    def wait_online(self, timeout):
        """Wait until the leader lists every agent online. Returns the last
        view ({id: online} or None) and whether all were."""
        deadline = time.monotonic() + timeout
        view = None
        while time.monotonic() < deadline:
            view = self.online()
            if view is not None and all(view.get(i) for i in self.ids):
                return view, True
            self.check_crashes()
            time.sleep(0.5)
        return view, False

    # -- logs ----------------------------------------------------------------

    def read_logs(self):
        """{agent id: [parsed JSON records, in file order]}."""
        out = {}
        for a in self.agents:
            recs = []
            try:
                with open(a.log_path, encoding="utf-8",
                          errors="replace") as fh:
                    for line in fh:
                        line = line.strip()
                        if not line.startswith("{"):
                            continue
                        try:
                            recs.append(json.loads(line))
                        except ValueError:
                            continue
            except OSError:
                pass
            out[a.id] = recs
        return out
