#!/usr/bin/env bash
# A walkthrough with real processes: a local 3-node rems cluster on loopback
# with two rems-agent processes, driven with remsctl.
#
# Sets up and builds, makes a test CA, starts three remsd nodes from YAML
# config files (each with an mTLS agent listener) and two rems-agent
# processes that supervise a service each, writes a policy through a
# follower, reads it linearizably through the other follower, issues a
# command to an agent through a follower and waits for its ack, SIGKILLs
# the leader, shows the new leader, the agents back on it, a command acked
# after the failover and that the policy survived, restarts the killed node
# and shows it caught up, then stops every agent and node with SIGTERM and
# checks each exited cleanly.
#
# Environment: REMS_DEMO_DIR (default: a new temp dir, removed at the end
# unless REMS_DEMO_KEEP=1), REMS_BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=${REMS_BUILD_DIR:-build}

step() { printf '\n== %s\n' "$*"; }
now_ms() { date +%s%3N; }

step "setup and build"
bash scripts/build.sh "$build"
remsd="$root/$build/api/remsd"
remsctl="$root/$build/api/remsctl"
agentbin="$root/$build/agentproto/rems-agent"

work=${REMS_DEMO_DIR:-$(mktemp -d /tmp/rems-demo.XXXXXX)}
mkdir -p "$work"
declare -A pid=()

cleanup() {
    local id
    for id in "${!pid[@]}"; do
        kill -KILL "${pid[$id]}" 2>/dev/null || true
        wait "${pid[$id]}" 2>/dev/null || true
    done
    if [ "${REMS_DEMO_KEEP:-0}" != 1 ]; then
        rm -rf "$work"
    else
        echo "kept $work"
    fi
}
trap cleanup EXIT

# Three free loopback ports per node (raft, api, agents), chosen by the
# kernel.
read -r -a ports <<<"$(python3 - <<'PY'
import socket
socks = []
for _ in range(9):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
)"
raft() { echo "127.0.0.1:${ports[$(($1 - 1))]}"; }
api() { echo "127.0.0.1:${ports[$(($1 + 2))]}"; }
agent_addr() { echo "127.0.0.1:${ports[$(($1 + 5))]}"; }

step "make a site CA, node and agent certificates (openssl, as in docs/certificates.md)"
REMS_TEST_AGENTS="edge-1 edge-2" sh tests/lib/make-test-ca.sh "$work/certs" >/dev/null 2>&1
ls "$work/certs"/ca.pem "$work/certs"/node1.pem "$work/certs"/edge-1.pem "$work/certs"/edge-2.pem

step "start a 3-node cluster in $work"
for id in 1 2 3; do
    cat >"$work/node$id.yaml" <<YAML
node_id: $id
data_dir: $work/node$id
raft_address: $(raft "$id")
api_address: $(api "$id")
election_timeout_ms: 1000
heartbeat_timeout_ms: 100
agent_address: $(agent_addr "$id")
tls_cert: $work/certs/node1.pem
tls_key: $work/certs/node1.key
tls_ca: $work/certs/ca.pem
lease_ttl_ms: 3000
agent_heartbeat_ms: 500
peers:
  - {id: 1, raft_address: $(raft 1), api_address: $(api 1)}
  - {id: 2, raft_address: $(raft 2), api_address: $(api 2)}
  - {id: 3, raft_address: $(raft 3), api_address: $(api 3)}
YAML
done
start_node() {
    "$remsd" --config "$work/node$1.yaml" 2>>"$work/node$1.log" &
    pid[$1]=$!
    echo "node $1: pid ${pid[$1]}, raft $(raft "$1"), api $(api "$1"), agents $(agent_addr "$1"), log $work/node$1.log"
}
for id in 1 2 3; do start_node "$id"; done
all="$(api 1),$(api 2),$(api 3)"

leader_id() { # prints the leader id as seen by the given endpoints, or nothing
    "$remsctl" --endpoints "$1" -o json status 2>/dev/null |
        python3 -c 'import json,sys; l=json.load(sys.stdin)["leader"]; print(l["id"] if l else "")' 2>/dev/null || true
}
wait_leader() { # $1 endpoints, $2 id to avoid (or 0)
    local i l
    for i in $(seq 1 200); do
        l=$(leader_id "$1")
        if [ -n "$l" ] && [ "$l" != "$2" ]; then echo "$l"; return 0; fi
        sleep 0.05
    done
    echo "no leader elected" >&2
    return 1
}
t0=$(now_ms)
leader=$(wait_leader "$all" 0)
echo "leader elected: node $leader after $(($(now_ms) - t0)) ms"
"$remsctl" --endpoints "$all" status

step "start two agents, each supervising a service"
for a in edge-1 edge-2; do
    cat >"$work/$a.yaml" <<YAML
id: $a
endpoints: [$(agent_addr 1), $(agent_addr 2), $(agent_addr 3)]
tls:
  cert: $work/certs/$a.pem
  key: $work/certs/$a.key
  ca: $work/certs/ca.pem
  server_name: node1.rems.test
data_dir: $work/$a
labels: {site: lab}
reconnect: {initial_ms: 100, max_ms: 1000}
services:
  - name: web
    command: [/bin/sh, -c, "while :; do sleep 1; done"]
    stop_timeout_ms: 2000
YAML
    "$agentbin" --config "$work/$a.yaml" 2>>"$work/$a.log" &
    pid[$a]=$!
    echo "agent $a: pid ${pid[$a]}, log $work/$a.log"
done
wait_agents_connected() { # $1 the leader's api address: both agents linked to it
    local i a ok
    for i in $(seq 1 400); do
        ok=1
        for a in edge-1 edge-2; do
            python3 - "$1" "$a" <<'PY' 2>/dev/null || ok=0
import json, sys, urllib.request
o = json.load(urllib.request.urlopen("http://%s/v1/agents/%s" % (sys.argv[1], sys.argv[2]), timeout=2))
sys.exit(0 if (o.get("live") or {}).get("connected") else 1)
PY
        done
        if [ "$ok" = 1 ]; then return 0; fi
        sleep 0.05
    done
    echo "agents not connected to the leader" >&2
    return 1
}
wait_agents_online() { # $1 endpoints; prints how long it took
    local i t0 n
    t0=$(now_ms)
    for i in $(seq 1 400); do
        n=$("$remsctl" --endpoints "$1" -o json agent list --online 2>/dev/null |
            python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))' 2>/dev/null || echo 0)
        if [ "$n" = 2 ]; then echo $(($(now_ms) - t0)); return 0; fi
        sleep 0.05
    done
    echo "agents not online" >&2
    return 1
}
t_agents=$(wait_agents_online "$all")
echo "both agents online after $t_agents ms"
"$remsctl" --endpoints "$all" agent list

followers=()
for id in 1 2 3; do [ "$id" != "$leader" ] && followers+=("$id"); done
f1=${followers[0]}
f2=${followers[1]}

step "write a policy through follower node $f1 (YAML in, checked, JSON stored)"
cat >"$work/policy.yaml" <<'YAML'
description: the lab's web service
placement:
  selector: {match_labels: {site: lab}}
mode: recommend
services:
  - name: web
    command: [/bin/sh, -c, "while :; do sleep 1; done"]
    stop_timeout_ms: 2000
    criticality: critical
YAML
"$remsctl" policy validate "$work/policy.yaml"
"$remsctl" --endpoints "$(api "$f1")" --user demo --reason "first rollout" \
    policy put site/lab/web -f "$work/policy.yaml"

step "the reconciler's view (mode recommend: it reports, it does not act)"
sleep 3
"$remsctl" --endpoints "$(api "$f1")" summary
"$remsctl" --endpoints "$(api "$f1")" recommendations

step "linearizable read through the other follower, node $f2"
"$remsctl" --endpoints "$(api "$f2")" policy get site/lab/web

step "restart edge-1's service through follower node $f1: committed first, then sent by the leader"
"$remsctl" --endpoints "$(api "$f1")" --user demo --reason "demo restart" \
    command issue edge-1 restart web --ttl 10000 --wait 15

step "SIGKILL the leader, node $leader"
t_kill=$(now_ms)
kill -KILL "${pid[$leader]}"
wait "${pid[$leader]}" 2>/dev/null || true
unset "pid[$leader]"
survivors="$(api "$f1"),$(api "$f2")"
t0=$(now_ms)
new_leader=$(wait_leader "$survivors" "$leader")
t_elect=$(($(now_ms) - t0))
for i in $(seq 1 200); do
    if "$remsctl" --endpoints "$survivors" policy put site/lab/after-failover \
        -f "$work/policy.yaml" >/dev/null 2>&1; then
        break
    fi
    sleep 0.05
done
t_write=$(($(now_ms) - t0))
echo "new leader: node $new_leader after $t_elect ms; first write after $t_write ms"
"$remsctl" --endpoints "$survivors" status

step "the agents reconnect to the new leader; a command after the failover"
wait_agents_connected "$(api "$new_leader")"
t_back=$(($(now_ms) - t_kill))
"$remsctl" --endpoints "$survivors" agent list
"$remsctl" --endpoints "$survivors" --user demo --reason "after failover" \
    command issue edge-2 restart web --ttl 10000 --wait 15
"$remsctl" --endpoints "$survivors" command list

step "the policy is still there"
"$remsctl" --endpoints "$survivors" policy get site/lab/web
"$remsctl" --endpoints "$survivors" policy list --prefix site/

step "restart node $leader: it rejoins as a follower and catches up"
start_node "$leader"
for i in $(seq 1 200); do
    if "$remsctl" --endpoints "$(api "$leader")" policy get --stale \
        site/lab/after-failover >/dev/null 2>&1; then
        break
    fi
    sleep 0.05
done
"$remsctl" --endpoints "$(api "$leader")" policy get --stale site/lab/after-failover
"$remsctl" --endpoints "$all" audit list

step "stop every agent, then every node, with SIGTERM"
rc_all=0
for a in edge-1 edge-2; do
    kill -TERM "${pid[$a]}"
    rc=0
    wait "${pid[$a]}" || rc=$?
    echo "agent $a exited with status $rc"
    [ "$rc" = 0 ] || rc_all=1
    unset "pid[$a]"
done
for id in "${!pid[@]}"; do kill -TERM "${pid[$id]}"; done
for id in "${!pid[@]}"; do
    rc=0
    wait "${pid[$id]}" || rc=$?
    echo "node $id exited with status $rc"
    [ "$rc" = 0 ] || rc_all=1
    unset "pid[$id]"
done

step "report"
echo "leader before: node $leader; after SIGKILL: node $new_leader"
echo "failover: election ${t_elect} ms, first successful write ${t_write} ms (election timeout 1000 ms)"
echo "policy site/lab/web survived the leader's death: yes"
echo "agents: both online ${t_agents} ms after start, linked to the new leader ${t_back} ms after the SIGKILL; a command acked before and after"
[ "$rc_all" = 0 ] && echo "clean stop: all agents and nodes exited 0" || { echo "clean stop: FAILED"; exit 1; }
