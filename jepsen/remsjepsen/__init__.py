"""remsjepsen: a Jepsen-style partition-testing harness for rems (remsd).

Python 3 standard library only. The entry point is ``jepsen/run``; the
modules are:

- ``history``   the history recorder and its JSONL / EDN writers
- ``checkers``  set, leader-per-term and stale-read checkers, rems-lincheck
- ``nemesis``   the seeded fault schedule, partition grudges, fault actions
- ``net``       network namespaces, the bridge, nftables partitions, cleanup
- ``nodes``     remsd processes (start, kill, pause, faketime, rejoin)
- ``workloads`` the register and set clients
- ``report``    timeline.html and latency.svg
- ``watchdog``  cleans up after a harness that died
- ``cli``       the command line and the test run
"""

PREFIX = "rj"  # every namespace, link and state file of the harness
VERSION = "1.0"
