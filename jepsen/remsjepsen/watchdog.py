"""Watchdog: ``python3 -m remsjepsen.watchdog <parent pid> <state file>``.

Started by the harness in its own session (setsid), it waits for the
harness to end, however it ends (exit, Ctrl-C, crash, SIGKILL). If the state
file is still there then (a clean exit removes it), it kills the node
processes recorded in it (by pid, checking their start time) and deletes the
run's namespaces, bridge and veths.
"""

import os
import select
import signal
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    from remsjepsen import net  # noqa: E402
else:
    from . import net


def wait_for_exit(pid, start):
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    if fd is not None and net.pid_alive(pid, start):
        p = select.poll()
        p.register(fd, select.POLLIN)
        while True:
            if p.poll(1000):
                break
            if not net.pid_alive(pid, start):
                break
        os.close(fd)
        return
    while net.pid_alive(pid, start):
        time.sleep(0.5)


def main(argv):
    if len(argv) != 3:
        print("usage: python3 -m remsjepsen.watchdog PARENT_PID STATE_FILE",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    ppid = int(argv[1])
    path = argv[2]
    start = None
    try:
        import json
        with open(path) as fh:
            start = json.load(fh).get("owner_start")
    except (OSError, ValueError):
        pass
    wait_for_exit(ppid, start)
    time.sleep(0.2)
    try:
        import json
        with open(path) as fh:
            st = json.load(fh)
    except (OSError, ValueError):
        return 0        # clean exit: nothing left to do
    if int(st.get("owner", 0)) != ppid or \
            (start is not None and st.get("owner_start") != start):
        return 0        # the file now belongs to a later run: not ours
    st["_path"] = path
    st["watchdog"] = None
    print("%s watchdog: harness %d is gone; cleaning up run %s"
          % (time.strftime("%H:%M:%S"), ppid, st.get("run")), flush=True)
    net.cleanup_state(st, log=lambda m: print("  " + m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
