"""Network of the test cluster, partitions, and cleanup.

Network-namespace mode (root): run number X gives
  - a bridge ``rjXbr`` in the root namespace with 10.77.X.1/24,
  - per node i (1..N) a namespace ``rjXni`` holding ``eth0`` =
    10.77.X.(10+i)/24, the peer of the veth ``rjXvi`` enslaved to the bridge.
The namespaces have no default route: the nodes reach only each other and
the harness's bridge address. Clients run in the root namespace and reach the
nodes through the bridge.

A partition is a *grudge*: node -> set of nodes whose packets it drops. It is
applied with an nftables table ``inet rjepsen`` (iptables chain RJEPSEN as a
fallback) inside each node's namespace, dropping input from the grudged nodes'
addresses only, never from the bridge's .1 (the clients). Heal deletes the
table.

The agent listener (only with the commands workload) is port 7201 in every
namespace.

Local mode (no root, or namespaces unavailable): every node on 127.0.0.1 with
free ports (raft, API, agent listener); no partitions.

Every run registers itself in a state file (registry_dir()/run-X.json) with
its owner pid, namespaces, links and node pids, so that the watchdog, a later
run and ``run --cleanup`` can remove what it left behind.
"""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from . import PREFIX

NFT_TABLE = "rjepsen"
IPT_CHAIN = "RJEPSEN"

NS_RE = re.compile(r"^%s(\d+)n(\d+)$" % PREFIX)
LINK_RE = re.compile(r"^%s(\d+)(br|v\d+|p\d+)$" % PREFIX)


# ---------------------------------------------------------------------------
# Grudges (pure)

PARTITION_KINDS = ("halves", "isolate-leader", "majority-ring", "bridge")


def majority(n):
    return n // 2 + 1


def complete_grudge(components):
    """Each node drops every node outside its own component."""
    comps = [list(c) for c in components]
    everyone = set(n for c in comps for n in c)
    g = {}
    for c in comps:
        for n in c:
            g[n] = everyone - set(c)
    return g


def grudge_halves(nodes, rng):
    """Random halves: a minority (n//2 nodes) and a majority."""
    s = list(nodes)
    rng.shuffle(s)
    cut = len(s) // 2
    return complete_grudge([s[:cut], s[cut:]])


def grudge_isolate(nodes, target):
    """One node (the leader) alone; the others together."""
    rest = [n for n in nodes if n != target]
    return complete_grudge([[target], rest])


def grudge_majority_ring(nodes, rng):
    """Jepsen's majorities ring: the nodes in a random ring; each sees the
    majority-sized window of the ring centred on itself, so every node sees a
    majority and no two nodes see the same one. For 3 nodes the views are
    {prev, self} and, with input-only drops, no link works both ways."""
    s = list(nodes)
    rng.shuffle(s)
    n = len(s)
    m = majority(n)
    everyone = set(s)
    g = {}
    for j, node in enumerate(s):
        view = set(s[(j - m // 2 + d) % n] for d in range(m))
        g[node] = everyone - view
    return g


def grudge_bridge(nodes, rng):
    """Two halves connected by one bridge node that sees everyone."""
    s = list(nodes)
    rng.shuffle(s)
    half = len(s) // 2
    c1, bridge, c2 = s[:half], s[half], s[half + 1:]
    g = complete_grudge([c1, c2])
    g[bridge] = set()
    return g


def make_grudge(kind, nodes, rng, leader=None):
    """The grudge for a partition kind. ``leader``: node to isolate for
    ``isolate-leader`` (a random node when None)."""
    nodes = list(nodes)
    if kind == "halves":
        return grudge_halves(nodes, rng)
    if kind == "isolate-leader":
        target = leader if leader in nodes else rng.choice(nodes)
        return grudge_isolate(nodes, target)
    if kind == "majority-ring":
        return grudge_majority_ring(nodes, rng)
    if kind == "bridge":
        return grudge_bridge(nodes, rng)
    raise ValueError("unknown partition kind %r" % kind)


def describe_grudge(kind, grudge):
    """``halves: n1 n3 | n2 n4 n5`` style text for the history."""
    if kind == "majority-ring" or kind == "bridge":
        parts = []
        for n in sorted(grudge):
            seen = sorted(m for m in grudge if m not in grudge[n])
            parts.append("%s sees %s" % (n, ",".join(seen)))
        return "%s: %s" % (kind, "; ".join(parts))
    comps = []
    done = set()
    for n in sorted(grudge):
        if n in done:
            continue
        comp = sorted(m for m in grudge if m not in grudge[n])
        done.update(comp)
        comps.append(" ".join(comp))
    return "%s: %s" % (kind, " | ".join(comps))


# ---------------------------------------------------------------------------
# Processes and the registry

def proc_start_time(pid):
    """The start time of pid in clock ticks (field 22 of /proc/pid/stat), or
    None when no such process exists (zombies count as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as fh:
            data = fh.read()
    except OSError:
        return None
    rest = data[data.rfind(")") + 2:].split()
    if rest and rest[0] == "Z":
        return None
    try:
        return int(rest[19])
    except (IndexError, ValueError):
        return None


def pid_alive(pid, start):
    st = proc_start_time(pid)
    return st is not None and (start is None or st == start)


def registry_dir():
    if os.geteuid() == 0 and os.path.isdir("/run"):
        d = "/run/remsjepsen"
    else:
        d = "/tmp/remsjepsen-%d" % os.getuid()
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def run_cmd(args, check=True, input=None, timeout=20):
    r = subprocess.run(args, input=input, capture_output=True, text=True,
                       timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode,
                                                r.stderr.strip()))
    return r


class StateFile:
    """The run's record for the watchdog and later cleanups."""

    def __init__(self, run, mode):
        self.path = os.path.join(registry_dir(), "run-%d.json" % run)
        self.lock = threading.Lock()
        self.data = {"run": run, "mode": mode, "owner": os.getpid(),
                     "owner_start": proc_start_time(os.getpid()),
                     "namespaces": [], "links": [], "pids": {},
                     "watchdog": None}
        self.write()

    def write(self):
        with self.lock:
            tmp = self.path + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(self.data, fh)
            os.replace(tmp, self.path)

    def update(self, **kw):
        with self.lock:
            self.data.update(kw)
        self.write()

    def add_pid(self, pid):
        with self.lock:
            self.data["pids"][str(pid)] = proc_start_time(pid)
        self.write()

    def remove_pid(self, pid):
        with self.lock:
            self.data["pids"].pop(str(pid), None)
        self.write()

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def load_states():
    out = []
    d = registry_dir()
    for name in sorted(os.listdir(d)):
        if not re.match(r"^run-\d+\.json$", name):
            continue
        p = os.path.join(d, name)
        try:
            with open(p) as fh:
                st = json.load(fh)
        except (OSError, ValueError):
            continue
        st["_path"] = p
        out.append(st)
    return out


def state_owner_alive(st):
    return pid_alive(int(st.get("owner", 0) or 0), st.get("owner_start"))


def kill_pid(pid, start):
    """SIGKILL pid if it is still the process recorded (same start time)."""
    if pid_alive(pid, start):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def ns_pids(ns):
    r = run_cmd(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in r.stdout.split() if x.isdigit()]


def cleanup_state(st, log=None):
    """Kill the run's node processes and delete its namespaces and links."""
    for pid, start in st.get("pids", {}).items():
        kill_pid(int(pid), start)
    for ns in st.get("namespaces", []):
        for pid in ns_pids(ns):
            kill_pid(pid, None)
    deadline = time.time() + 5
    for pid, start in st.get("pids", {}).items():
        while pid_alive(int(pid), start) and time.time() < deadline:
            time.sleep(0.05)
    for ns in st.get("namespaces", []):
        r = run_cmd(["ip", "netns", "del", ns], check=False)
        if log and r.returncode == 0:
            log("removed namespace %s" % ns)
    for link in st.get("links", []):
        r = run_cmd(["ip", "link", "del", link], check=False)
        if log and r.returncode == 0:
            log("removed link %s" % link)
    wd = st.get("watchdog")
    if wd and wd.get("pid") != os.getpid():
        kill_pid(int(wd["pid"]), wd.get("start"))
    p = st.get("_path")
    if p:
        try:
            os.unlink(p)
        except OSError:
            pass


def list_netns():
    if not os.path.isdir("/var/run/netns") and not os.path.isdir("/run/netns"):
        return []
    r = run_cmd(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def list_links():
    r = run_cmd(["ip", "-o", "link", "show"], check=False)
    out = []
    for line in r.stdout.splitlines():
        parts = line.split(":", 2)
        if len(parts) >= 2:
            out.append(parts[1].strip().split("@")[0])
    return out


def cleanup_leftovers(force=False, log=None):
    """Remove what earlier runs left: state files of dead owners, and every
    namespace or link with the harness prefix that no live run owns. With
    force, live runs' resources too. Returns the runs still live."""
    live = set()
    for st in load_states():
        if state_owner_alive(st) and not force:
            live.add(int(st["run"]))
            continue
        if log:
            log("cleaning up run %s (owner pid %s gone)" % (st.get("run"),
                                                             st.get("owner")))
        cleanup_state(st, log)
    if os.geteuid() != 0:
        return live
    for ns in list_netns():
        m = NS_RE.match(ns)
        if m and int(m.group(1)) not in live:
            for pid in ns_pids(ns):
                kill_pid(pid, None)
            time.sleep(0.1)
            run_cmd(["ip", "netns", "del", ns], check=False)
            if log:
                log("removed leftover namespace %s" % ns)
    for link in list_links():
        m = LINK_RE.match(link)
        if m and int(m.group(1)) not in live:
            run_cmd(["ip", "link", "del", link], check=False)
            if log:
                log("removed leftover link %s" % link)
    return live


def pick_run_number(live):
    used = set(live)
    taken = set()
    for ns in list_netns() if os.geteuid() == 0 else []:
        m = NS_RE.match(ns)
        if m:
            taken.add(int(m.group(1)))
    routes = ""
    try:
        routes = run_cmd(["ip", "-4", "route", "show"], check=False).stdout
    except OSError:
        pass
    for x in range(1, 251):
        if x in used or x in taken:
            continue
        if ("10.77.%d." % x) in routes:
            continue
        return x
    raise RuntimeError("no free run number (10.77.1-250.0/24 all in use)")


def netns_available():
    """True when we can create namespaces, veths and nft rules (root)."""
    if os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip",):
        if not any(os.access(os.path.join(p, tool), os.X_OK)
                   for p in os.environ.get("PATH", "/usr/sbin:/sbin")
                   .split(":") + ["/usr/sbin", "/sbin"]):
            return False, "%s not found" % tool
    probe = "%sprobe%d" % (PREFIX, os.getpid() % 100000)
    r = run_cmd(["ip", "netns", "add", probe], check=False)
    if r.returncode != 0:
        return False, "ip netns add failed: %s" % r.stderr.strip()
    run_cmd(["ip", "netns", "del", probe], check=False)
    return True, ""


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------------------
# Networks

class LocalNetwork:
    """All nodes on 127.0.0.1, free ports; partitions unsupported."""

    mode = "local"
    supports_partition = False

    def __init__(self, run, names, state):
        self.run = run
        self.names = list(names)
        self.state = state
        self.addrs = {}
        used = set()
        for n in self.names:
            ports = []
            while len(ports) < 3:
                p = free_port()
                if p not in used:
                    used.add(p)
                    ports.append(p)
            self.addrs[n] = ("127.0.0.1", ports[0], ports[1], ports[2])

    def setup(self):
        pass

    def host(self, name):
        return self.addrs[name][0]

    def raft_port(self, name):
        return self.addrs[name][1]

    def api_port(self, name):
        return self.addrs[name][2]

    def agent_port(self, name):
        return self.addrs[name][3]

    def exec_prefix(self, name):
        return []

    def apply_grudge(self, grudge):
        raise RuntimeError("partitions need network namespaces")

    def heal(self):
        pass

    def teardown(self):
        pass


class NetnsNetwork:
    mode = "netns"
    supports_partition = True
    RAFT_PORT = 7001
    API_PORT = 7101
    AGENT_PORT = 7201

    def __init__(self, run, names, state):
        self.run = run
        self.names = list(names)
        self.state = state
        self.bridge = "%s%dbr" % (PREFIX, run)
        self.ns = {}
        self.veth = {}
        self.ip = {}
        for i, n in enumerate(self.names, start=1):
            self.ns[n] = "%s%dn%d" % (PREFIX, run, i)
            self.veth[n] = "%s%dv%d" % (PREFIX, run, i)
            self.ip[n] = "10.77.%d.%d" % (run, 10 + i)
        self.gateway = "10.77.%d.1" % run
        self.firewall = "nft"
        self.lock = threading.Lock()
        self.grudge = {}

    def host(self, name):
        return self.ip[name]

    def raft_port(self, name):
        return self.RAFT_PORT

    def api_port(self, name):
        return self.API_PORT

    def agent_port(self, name):
        return self.AGENT_PORT

    def exec_prefix(self, name):
        return ["ip", "netns", "exec", self.ns[name]]

    def setup(self):
        # Record names before creating them, so a crash half-way is cleaned.
        self.state.update(namespaces=list(self.ns.values()),
                          links=[self.bridge] + list(self.veth.values()))
        run_cmd(["ip", "link", "add", self.bridge, "type", "bridge"])
        run_cmd(["ip", "addr", "add", self.gateway + "/24", "dev",
                 self.bridge])
        run_cmd(["ip", "link", "set", self.bridge, "up"])
        for i, n in enumerate(self.names, start=1):
            ns, veth = self.ns[n], self.veth[n]
            peer = "%s%dp%d" % (PREFIX, self.run, i)
            run_cmd(["ip", "netns", "add", ns])
            run_cmd(["ip", "link", "add", veth, "type", "veth", "peer",
                     "name", peer])
            run_cmd(["ip", "link", "set", peer, "netns", ns])
            run_cmd(["ip", "-n", ns, "link", "set", peer, "name", "eth0"])
            run_cmd(["ip", "-n", ns, "addr", "add", self.ip[n] + "/24",
                     "dev", "eth0"])
            run_cmd(["ip", "-n", ns, "link", "set", "eth0", "up"])
            run_cmd(["ip", "-n", ns, "link", "set", "lo", "up"])
            run_cmd(["ip", "link", "set", veth, "master", self.bridge])
            run_cmd(["ip", "link", "set", veth, "up"])
        # nftables or iptables inside the namespaces?
        first = self.ns[self.names[0]]
        r = run_cmd(["ip", "netns", "exec", first, "nft", "-f", "-"],
                    check=False, input=self._nft_script(set()))
        if r.returncode != 0:
            r2 = run_cmd(["ip", "netns", "exec", first, "iptables", "-L",
                          "INPUT", "-n"], check=False)
            if r2.returncode != 0:
                raise RuntimeError("neither nft (%s) nor iptables (%s) "
                                   "work in a namespace" %
                                   (r.stderr.strip(), r2.stderr.strip()))
            self.firewall = "iptables"
        self.heal()

    def _nft_script(self, drop_ips):
        s = "add table inet %s\ndelete table inet %s\n" % (NFT_TABLE,
                                                           NFT_TABLE)
        if drop_ips:
            s += ("table inet %s {\n  chain input {\n    type filter hook "
                  "input priority -10; policy accept;\n    ip saddr { %s } "
                  "drop\n  }\n}\n" % (NFT_TABLE, ", ".join(sorted(drop_ips))))
        return s

    def _apply_node(self, name, drop_ips):
        ns = self.ns[name]
        drop_ips = set(drop_ips) - {self.gateway}
        if self.firewall == "nft":
            run_cmd(["ip", "netns", "exec", ns, "nft", "-f", "-"],
                    input=self._nft_script(drop_ips))
            return
        ipt = ["ip", "netns", "exec", ns, "iptables"]
        run_cmd(ipt + ["-D", "INPUT", "-j", IPT_CHAIN], check=False)
        run_cmd(ipt + ["-F", IPT_CHAIN], check=False)
        run_cmd(ipt + ["-X", IPT_CHAIN], check=False)
        if drop_ips:
            run_cmd(ipt + ["-N", IPT_CHAIN])
            for ip in sorted(drop_ips):
                run_cmd(ipt + ["-A", IPT_CHAIN, "-s", ip, "-j", "DROP"])
            run_cmd(ipt + ["-I", "INPUT", "1", "-j", IPT_CHAIN])

    def apply_grudge(self, grudge):
        with self.lock:
            for n in self.names:
                self._apply_node(n, [self.ip[m] for m in grudge.get(n, ())])
            self.grudge = {n: set(v) for n, v in grudge.items()}

    def heal(self):
        with self.lock:
            for n in self.names:
                self._apply_node(n, [])
            self.grudge = {}

    def teardown(self):
        cleanup_state({"namespaces": list(self.ns.values()),
                       "links": [self.bridge] + list(self.veth.values())})


def make_network(run, names, state, want_netns):
    if want_netns:
        return NetnsNetwork(run, names, state)
    return LocalNetwork(run, names, state)

