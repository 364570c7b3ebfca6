"""Supervision: a stopped (wedged) or crash-looping worker must not strand the
connections the kernel queues on its slots.  A live worker adopts them until
the slot's own worker is back; a worker that misses three heartbeats is
killed and replaced.  Each case measures the longest connect-to-response wait
of new connections and holds it to a bound."""
import os
import re
import resource
import signal
import socket
import threading
import time

from harness import (Spindle, Tap, alive, check, eq, fd_count, free_port, http_get, recv_response,
                     wait_for)
from loadgen import children, peer_ports_of, wait_ready

tap = Tap()

BODY = b"Hello, World!"


def services(port):
    return ("[http main]\nlisten = 127.0.0.1:%d\n"
            "return /plaintext = 200 text/plain Hello, World!\n" % port)


class Prober:
    """threads clients, each opening a new connection for every request (with
    a short pause between them) and timing connect to whole response."""

    def __init__(self, port, threads=3, timeout=8.0, pause=0.005):
        self.port = port
        self.timeout = timeout
        self.pause = pause
        self.lock = threading.RLock()
        self.waits = []   # (seconds, when)
        self.errors = []  # (when, seconds, message)
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self):
        req = b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        while not self.stopping.is_set():
            t0 = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              timeout=self.timeout) as s:
                    s.sendall(req)
                    status, _, body = recv_response(s)
                if (status, body) != (200, BODY):
                    raise ValueError("status %d body %r" % (status, body[:40]))
            except (OSError, ConnectionError, ValueError) as e:
                with self.lock:
                    self.errors.append((t0, time.monotonic() - t0,
                                        "%s: %s" % (type(e).__name__, e)))
            else:
                with self.lock:
                    self.waits.append((time.monotonic() - t0, t0))
            time.sleep(self.pause)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(self.timeout + 2)
        return self

    def longest(self):
        with self.lock:
            return max([w for w, _ in self.waits] + [e[1] for e in self.errors] + [0.0])

    def summary(self):
        with self.lock:
            return "%d answered, %d failed, longest wait %.3fs, errors %r" % (
                len(self.waits), len(self.errors), self.longest(), self.errors[:5])


@tap.case
def stopped_worker_slots_are_adopted_and_it_is_replaced():
    port = free_port()
    sp = Spindle(services(port), workers=2, master="slots = 4")
    sp.start(ports=[port])
    victim = None
    prober = None
    try:
        workers = wait_ready(sp, 2)
        victim = workers[1]
        prober = Prober(port).start()
        time.sleep(0.5)
        os.kill(victim, signal.SIGSTOP)
        t_stop = time.monotonic()
        # Long enough to see the adoption, the three missed heartbeats and
        # the replacement.
        check(wait_for(lambda: not alive(victim), 8), "stopped worker still there after 8 s")
        killed_after = time.monotonic() - t_stop
        replacement = [p for p in wait_ready(sp, 2, timeout=5) if p not in workers]
        eq(len(replacement), 1, "one replacement")
        time.sleep(1.0)
        prober.stop()
        print("# SIGSTOP: %s; killed %.2fs after the stop" % (prober.summary(), killed_after))
        # A connection the worker had accepted when it stopped dies with it;
        # every other one (queued on its slots or made after the stop) must be
        # answered in time.
        new = t_stop + 0.01
        eq([e for e in prober.errors if e[0] >= new], [], "failed new connections")
        check(len(prober.errors) <= len(prober.threads), "failures: " + prober.summary())
        longest = max(w for w, _ in prober.waits)
        check(longest < 3.0, "a new connection waited %.3fs (bound 3 s)" % longest)
        check(len(prober.waits) > 50, "too few probes to judge: " + prober.summary())
        logs = sp.logs()
        check(re.search(r"worker 1 \(pid %d, generation 1\) does not answer its heartbeat" % victim,
                        logs), "not answering logged:\n" + logs)
        check(re.search(r"worker 0 \(pid \d+\) accepts on the 2 slots of worker 1", logs),
              "adoption logged:\n" + logs)
        check(re.search(r"worker 1 \(pid %d, generation 1\) missed 3 heartbeats \(stopped\); "
                        r"killing it" % victim, logs), "kill logged:\n" + logs)
        check(re.search(r"returns the slots of worker 1", logs), "release logged:\n" + logs)
        eq(http_get(port, "/plaintext")[0], 200, "serving after the replacement")
    finally:
        if prober:
            prober.stop()
        if victim and alive(victim):
            os.kill(victim, signal.SIGKILL)
            os.kill(victim, signal.SIGCONT)
        sp.stop()


@tap.case
def crash_looping_worker_slots_are_adopted():
    port = free_port()
    sp = Spindle(services(port), workers=2, master="slots = 4")
    sp.start(ports=[port])
    prober = None
    stop_killing = threading.Event()
    kills = []
    try:
        workers = wait_ready(sp, 2)
        survivor = workers[0]

        def killer():
            while not stop_killing.is_set():
                for p in children(sp.pid):
                    if p != survivor:
                        try:
                            os.kill(p, signal.SIGKILL)
                            kills.append(p)
                        except ProcessLookupError:
                            pass
                stop_killing.wait(0.3)

        prober = Prober(port).start()
        time.sleep(0.3)
        k = threading.Thread(target=killer, daemon=True)
        k.start()
        time.sleep(5.0)
        stop_killing.set()
        k.join(2)
        time.sleep(0.3)
        prober.stop()
        print("# kill every 0.3 s: %s; %d kills" % (prober.summary(), len(kills)))
        check(len(kills) >= 4, "too few kills: %r" % kills)
        check(alive(survivor), "the other worker survived")
        # A connection the victim had accepted when it was killed is lost with
        # it; every other one must be answered.
        timeouts = [e for e in prober.errors if "timed out" in e[2]]
        eq(timeouts, [], "timed out connections")
        check(len(prober.errors) <= len(kills), "more failures than kills: " + prober.summary())
        longest = max([w for w, _ in prober.waits] + [0.0])
        check(longest < 0.5, "a new connection waited %.3fs (bound 0.5 s)" % longest)
        check(len(prober.waits) > 50, "too few probes to judge: " + prober.summary())
        wait_ready(sp, 2, timeout=15)
        eq(http_get(port, "/plaintext")[0], 200, "serving after the crashes")
    finally:
        stop_killing.set()
        if prober:
            prober.stop()
        sp.stop()


@tap.case
def briefly_stopped_worker_gets_its_slots_back():
    port = free_port()
    sp = Spindle(services(port), workers=2, master="slots = 4")
    sp.start(ports=[port])
    victim = None
    try:
        workers = wait_ready(sp, 2)
        victim = workers[1]
        os.kill(victim, signal.SIGSTOP)
        check(wait_for(lambda: "accepts on the 2 slots of worker 1" in sp.logs(), 3),
              "adoption logged:\n" + sp.logs())
        os.kill(victim, signal.SIGCONT)
        check(wait_for(lambda: "returns the slots of worker 1" in sp.logs(), 3),
              "release logged:\n" + sp.logs())
        check("worker 1 (pid %d) answers again" % victim in sp.logs(), "logged:\n" + sp.logs())
        time.sleep(3.5)  # past three heartbeats: it is not killed
        eq(wait_ready(sp, 2), workers, "the same workers")
        # Both serve their own slots again: 16 keep-alive connections spread
        # over both.
        socks = []
        for _ in range(16):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(recv_response(c)[0], 200, "answered")
            socks.append(c)
        check(peer_ports_of(victim, port), "the continued worker serves new connections")
        for c in socks:
            c.close()
    finally:
        if victim and alive(victim):
            os.kill(victim, signal.SIGCONT)
        sp.stop()


@tap.case
def reload_while_a_worker_is_stopped():
    port = free_port()
    sp = Spindle(services(port), workers=2, master="slots = 4", shutdown_timeout="1s")
    sp.start(ports=[port])
    victim = None
    prober = None
    try:
        workers = wait_ready(sp, 2)
        victim = workers[1]
        os.kill(victim, signal.SIGSTOP)
        check(wait_for(lambda: "accepts on the 2 slots of worker 1" in sp.logs(), 3),
              "adoption logged:\n" + sp.logs())
        prober = Prober(port).start()
        rc, out = sp.ctl("reload")
        eq(rc, 0, "reload: " + out)
        new = wait_ready(sp, 2)
        check(not set(new) & set(workers), "a new generation: %r" % new)
        check(wait_for(lambda: not alive(victim), 5), "the stopped old worker is gone")
        time.sleep(0.5)
        prober.stop()
        print("# reload with a stopped worker: " + prober.summary())
        eq(prober.errors, [], "failed connections")
        check(prober.longest() < 3.0, "a connection waited %.3fs" % prober.longest())
    finally:
        if prober:
            prober.stop()
        if victim and alive(victim):
            os.kill(victim, signal.SIGKILL)
            os.kill(victim, signal.SIGCONT)
        sp.stop()


@tap.case
def worker_respawned_after_descriptor_exhaustion():
    port = free_port()
    sp = Spindle(services(port), workers=2)
    sp.start(ports=[port])
    clients = []
    try:
        workers = wait_ready(sp, 2)
        # Leave the master a few descriptors, then take them with idle control
        # connections (the master waits for their command line); more wait in
        # the backlog.
        used = fd_count(sp.pid)
        soft, hard = resource.prlimit(sp.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(sp.pid, resource.RLIMIT_NOFILE, (used + 4, hard))
        for _ in range(12):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(sp.sock)
            clients.append(c)
        check(wait_for(lambda: fd_count(sp.pid) >= used + 4, 3),
              "master descriptors: %d of %d" % (fd_count(sp.pid), used + 4))
        before = sp.logs().count("on the control socket failed")
        os.kill(workers[1], signal.SIGKILL)
        check(wait_for(lambda: re.search(r"socketpair\(.*\) for worker 1 failed", sp.logs()), 3),
              "the respawn ran out of descriptors:\n" + sp.logs())
        time.sleep(1.5)
        logged = sp.logs().count("on the control socket failed") - before
        check(logged <= 2, "control socket accept failures logged %d times in 1.5 s" % logged)
        # Descriptors come back: the worker must too, without a reload.
        for c in clients:
            c.close()
        clients = []
        resource.prlimit(sp.pid, resource.RLIMIT_NOFILE, (soft, hard))
        pids = wait_ready(sp, 2, timeout=5)
        check(workers[1] not in pids, "replacement: %r" % pids)
        eq(http_get(port, "/plaintext")[0], 200, "serving")
    finally:
        for c in clients:
            c.close()
        sp.stop()


if __name__ == "__main__":
    tap.run()
