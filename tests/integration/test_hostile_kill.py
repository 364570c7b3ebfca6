#!/usr/bin/env python3
"""kill -9 of a random worker every second for 20 seconds under keep-alive
load: only connections the killed worker held fail (reset or end of stream,
never a refused or stuck connect), the master logs and replaces every
death, and it leaks no descriptor."""
import errno
import os
import random
import re
import signal
import socket
import threading
import time

from harness import Spindle, Tap, check, eq, fd_count, free_port, wait_for, wait_state
from hostile import get_ok, peer_ports

tap = Tap()
PORT = free_port()
WORKERS = 3
CLIENTS = 32
KILLS = 20
TIMEOUT = 15.0  # longer than the master's respawn back-off can grow in 20 s
S = None
R = {}


class Load:
    """CLIENTS threads doing keep-alive GETs.  Each failure is recorded as
    (time, kind, local port, first request on its connection)."""

    def __init__(self):
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.connect_failures = []
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(CLIENTS)]

    def fail(self, kind, lport, fresh):
        with self.lock:
            self.failures.append((time.monotonic(), kind, lport, fresh))

    def run(self):
        req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
        s = None
        while not self.stop.is_set():
            if s is None:
                try:
                    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
                except OSError as e:
                    with self.lock:
                        self.connect_failures.append((time.monotonic(), repr(e)))
                    time.sleep(0.01)
                    continue
                lport = s.getsockname()[1]
                fresh = True
            try:
                s.sendall(req)
                buf = b""
                while not buf.endswith(b"AAA"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise EOFError("end of stream after %d bytes" % len(buf))
                    buf += chunk
                if not buf.startswith(b"HTTP/1.1 200 "):
                    raise ValueError("bad response %r" % buf[:60])
            except (EOFError, ConnectionResetError, BrokenPipeError) as e:
                self.fail(type(e).__name__, lport, fresh)
                s.close()
                s = None
                continue
            except OSError as e:
                kind = "timeout" if isinstance(e, socket.timeout) else errno.errorcode.get(
                    e.errno, repr(e))
                self.fail(kind, lport, fresh)
                s.close()
                s = None
                continue
            except ValueError as e:
                self.fail(str(e), lport, fresh)
                s.close()
                s = None
                continue
            fresh = False
            with self.lock:
                self.ok += 1
        if s is not None:
            s.close()


def setup():
    global S
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
""" % PORT, workers=WORKERS)
    S.start(ports=[PORT])
    S.wait_ready(WORKERS)


@tap.case
def kill_a_random_worker_every_second_under_load():
    seed = int(time.time())
    rnd = random.Random(seed)
    print("# random seed %d" % seed, flush=True)
    R["master_fds"] = fd_count(S.pid)
    load = Load()
    R["load"] = load
    for t in load.threads:
        t.start()
    # Every client gets a few answers before the first kill.
    check(wait_for(lambda: load.ok >= 10 * CLIENTS or load.failures, TIMEOUT) and
          not load.failures, "load runs cleanly before the kills: %d ok, %r"
          % (load.ok, load.failures[:5]))
    kills = []  # (time, pid, client ports it held)
    R["kills"] = kills
    t_next = time.monotonic()
    for _ in range(KILLS):
        t_next += 1.0
        # A victim still dying is listed until it is a zombie: never pick one
        # twice.  When every index waits out its respawn back-off, the next
        # kill waits for the first replacement.
        killed = {k[1] for k in kills}
        victims = wait_for(lambda: [p for p in S.workers() if p not in killed], TIMEOUT)
        check(victims, "a worker to kill (master has %r, killed %r)" % (S.workers(), killed))
        pid = rnd.choice(victims)
        # Stopped, the victim accepts nothing more while its connections are
        # listed; then it dies as if killed outright.  The master kills a
        # worker stopped for MASTER_HEARTBEAT_MISSES heartbeats itself: on a
        # loaded machine it may do so while the list is read, so the list
        # taken just before the stop is kept for that case.
        before = peer_ports(pid)
        os.kill(pid, signal.SIGSTOP)
        check(wait_state(pid, "Tt"), "worker %d stopped" % pid)
        t_stop = time.monotonic()
        ports = peer_ports(pid)
        if not wait_state(pid, "Tt", timeout=0):
            print("# worker %d was killed by the master while stopped" % pid, flush=True)
            ports |= before
        kills.append((t_stop, pid, ports))
        # The master kills a worker that misses MASTER_HEARTBEAT_MISSES
        # heartbeats while stopped; on a slow machine it may beat us to it.
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            print("# worker %d was already killed by the master (stopped too long)" % pid,
                  flush=True)
        time.sleep(max(0.0, t_next - time.monotonic()))
    # Every index is replaced, then the load runs on until every client could
    # have had a few more answers.
    S.wait_workers(WORKERS, timeout=TIMEOUT, exclude=[k[1] for k in kills])
    ok0 = load.ok
    wait_for(lambda: load.ok >= ok0 + 10 * CLIENTS, TIMEOUT)
    load.stop.set()
    for t in load.threads:
        t.join(TIMEOUT + 2)
    held = sum(len(k[2]) for k in kills)
    print("# %d kills, %d client connections on the victims, %d failures, %d ok requests"
          % (len(kills), held, len(load.failures), load.ok), flush=True)
    check(load.ok > ok0, "requests succeed after the last respawn")


@tap.case
def new_connections_always_succeed():
    load = R["load"]
    eq(load.connect_failures, [], "connect failures")


@tap.case
def failures_are_resets_or_end_of_stream_only():
    load = R["load"]
    bad = [f for f in load.failures if f[1] not in ("EOFError", "ConnectionResetError",
                                                    "BrokenPipeError")]
    eq(bad, [], "failures of another kind (a stuck or refused request)")


@tap.case
def only_connections_of_killed_workers_fail():
    load, kills = R["load"], R["kills"]
    unexplained = []
    for t, kind, lport, fresh in load.failures:
        if not any(k[0] <= t and lport in k[2] for k in kills):
            unexplained.append((round(t - kills[0][0], 3), kind, lport, fresh))
    eq(unexplained, [], "failures on connections no killed worker held")
    held = sum(len(k[2]) for k in kills)
    check(len(load.failures) <= held, "failures %d <= connections on the victims %d"
          % (len(load.failures), held))


@tap.case
def master_logs_every_death_and_respawns():
    kills = R["kills"]
    with open(S.log, errors="replace") as f:
        logs = f.read()
    for _, pid, _ in kills:
        lines = re.findall(r"\(pid %d, generation \d+\) died: signal 9 .*" % pid, logs)
        eq(len(lines), 1, "log lines for the death of %d" % pid)
    eq(len(S.workers()), WORKERS, "workers")
    check(get_ok(PORT), "GET /a")


@tap.case
def master_leaks_no_descriptors():
    wait_for(lambda: fd_count(S.pid) == R["master_fds"], 10.0, step=0.05)
    eq(fd_count(S.pid), R["master_fds"], "master fds before and after")


setup()
tap.run()
