"""Reload as a transaction: under constant load no request fails while the
workers are replaced, the worker count changes and addresses come and go; a
bad configuration or workers that cannot start leave the old generation
serving; nothing leaks across many reloads."""
import os
import re
import time

from harness import Spindle, Tap, check, eq, free_port, fd_count, http_get, wait_for, wait_port
from loadgen import HttpLoad, fd_targets, listening_on

tap = Tap()

BODY = b"Hello, World!"


def services(ports, extra=""):
    text = "[http main]\n"
    for p in ports:
        text += "listen = 127.0.0.1:%d\n" % p
    text += "return /plaintext = 200 text/plain Hello, World!\n" + extra
    return text


def status(sp):
    rc, out = sp.ctl("status")
    eq(rc, 0, "spindle -s status exit code (%s)" % out)
    m = re.search(r"^master pid=(\d+) generation=(\d+)", out, re.M)
    check(m, "no master line in status:\n" + out)
    workers = []
    for w in re.finditer(r"^worker pid=(\d+) generation=(\d+) index=(\d+) state=(\w+)", out, re.M):
        workers.append((int(w.group(1)), int(w.group(2)), int(w.group(3)), w.group(4)))
    return int(m.group(1)), int(m.group(2)), workers, out


def current_workers(sp, n, timeout=5.0):
    """Master pid, generation and the pids of the n workers of the current
    generation, once they are all ready."""
    deadline = time.monotonic() + timeout
    while True:
        mpid, gen, workers, out = status(sp)
        pids = sorted(p for p, g, _, st in workers if g == gen and st == "ready")
        if len(pids) == n or time.monotonic() > deadline:
            return mpid, gen, pids
        time.sleep(0.02)


def listen_slots(sp):
    """{port: slot sockets the master holds} from -s status."""
    _, _, _, out = status(sp)
    return {int(p): int(n) for p, n in re.findall(r"^listen 127\.0\.0\.1:(\d+) slots=(\d+)$",
                                                   out, re.M)}


def reload_under_load(keepalive):
    port, port2 = free_port(), free_port()
    sp = Spindle(services([port]), workers=2, shutdown_timeout="5s")
    sp.start(ports=[port])
    load = None
    try:
        master = sp.pid
        _, gen0, seen = current_workers(sp, 2)
        eq(len(seen), 2, "initial workers")
        seen = set(seen)
        load = HttpLoad(port, conns=64, keepalive=keepalive).start()
        check(load.wait_requests(200), "load never got going: " + load.summary())

        plan = [3, 1, 2]
        max_slots = listen_slots(sp)[port]
        with_port2 = False
        for i in range(20):
            workers = plan[i % 3]
            # Every fourth reload adds the second address, the next one removes it.
            if i % 4 == 1:
                with_port2 = True
            elif i % 4 == 2:
                with_port2 = False
            ports = [port, port2] if with_port2 else [port]
            sp.write_conf(services(ports), workers=workers, shutdown_timeout="5s")
            rc, out = sp.ctl("reload")
            eq(rc, 0, "reload %d exit code (%s)\n%s" % (i, out, sp.logs()))
            check("reloaded" in out, "reload answer: " + out)
            mpid, gen, pids = current_workers(sp, workers)
            eq(mpid, master, "master pid")
            slots = listen_slots(sp)[port]
            check(slots >= max_slots and slots >= workers,
                  "slots of the address that stays went from %d to %d" % (max_slots, slots))
            max_slots = slots
            eq(gen, gen0 + i + 1, "generation after reload %d" % i)
            eq(len(pids), workers, "workers after reload %d" % i)
            check(not set(pids) & seen, "reload %d kept a worker: %r in %r" % (i, pids, seen))
            seen |= set(pids)
            if with_port2:
                st, _, body = http_get(port2, "/plaintext")
                eq((st, body), (200, BODY), "the added address serves")
            time.sleep(0.25)
        check(load.wait_requests(200), "load stalled after the reloads: " + load.summary())
        load.stop()
        eq(load.failed, 0, "failed requests: " + load.summary())
        check(load.ok > 1000, "too few requests to mean anything: " + load.summary())
        print("# " + load.summary(), flush=True)
        eq(sp.proc.poll(), None, "master still running")
        # The removed address is closed once its generation has drained.
        deadline = time.monotonic() + 8
        while listening_on(port2) and time.monotonic() < deadline:
            time.sleep(0.05)
        check(not listening_on(port2), "removed address still listening")
    finally:
        if load:
            load.stop()
        sp.stop()


@tap.case
def reload_keepalive_load_no_failures():
    reload_under_load(keepalive=True)


@tap.case
def reload_close_load_no_failures():
    reload_under_load(keepalive=False)


@tap.case
def broken_config_keeps_old_workers():
    port = free_port()
    sp = Spindle(services([port]), workers=2)
    sp.start(ports=[port])
    try:
        before = sp.wait_workers(2)
        sp.write_conf(services([port], "keepalive_timeout = forever\n"), workers=2)
        with open(sp.conf) as f:
            line = [i + 1 for i, l in enumerate(f) if l.startswith("keepalive_timeout")][0]
        rc, out = sp.ctl("reload")
        check(rc != 0, "a broken configuration was accepted: " + out)
        check("%s:%d:" % (sp.conf, line) in out, "answer does not name file and line: " + out)
        eq(sp.workers(), before, "workers after a rejected reload")
        eq(http_get(port, "/plaintext")[0], 200, "old workers serve")

        # A file that parses but whose workers cannot start.
        sp.write_conf(services([port], "root = %s/missing\n" % sp.dir), workers=2)
        rc, out = sp.ctl("reload")
        check(rc != 0, "a reload whose workers fail was reported as success: " + out)
        check("missing" in out and "start" in out, "answer does not say why: " + out)
        print("# " + out.strip(), flush=True)
        time.sleep(0.3)
        eq(sp.workers(), before, "workers after a failed start")
        eq(http_get(port, "/plaintext")[0], 200, "old workers serve")
        rc, out = sp.ctl("status")
        check("last_reload: failed" in out, "status shows the failure: " + out)

        sp.write_conf(services([port]), workers=2)
        rc, out = sp.ctl("reload")
        eq(rc, 0, "good reload after bad ones: " + out)
        after = sp.wait_workers(2, exclude=before)
        check(not set(after) & set(before), "workers replaced")
        eq(http_get(port, "/plaintext")[0], 200, "new workers serve")
    finally:
        sp.stop()


@tap.case
def new_address_that_cannot_bind_aborts_reload():
    port = free_port()
    import socket
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    taken = blocker.getsockname()[1]
    sp = Spindle(services([port]), workers=1)
    sp.start(ports=[port])
    try:
        before = sp.wait_workers(1)
        sp.write_conf(services([port, taken]), workers=1)
        rc, out = sp.ctl("reload")
        check(rc != 0, "reload with an address in use succeeded: " + out)
        check(str(taken) in out, "answer names the address: " + out)
        eq(sp.workers(), before, "workers kept")
        eq(http_get(port, "/plaintext")[0], 200, "still serving")
    finally:
        blocker.close()
        sp.stop()


@tap.case
def no_fd_leak_over_50_reloads():
    port = free_port()
    sp = Spindle(services([port]), workers=2, master="slots = 4\n")
    sp.start(ports=[port])
    try:
        sp.wait_workers(2)
        # One reload first, so that everything lazily opened exists already.
        eq(sp.ctl("reload")[0], 0, "first reload")
        sp.wait_workers(2, timeout=8)
        time.sleep(0.3)
        m0, w0 = fd_targets(sp.pid), [fd_count(p) for p in sp.workers()]
        for i in range(50):
            rc, out = sp.ctl("reload")
            eq(rc, 0, "reload %d: %s" % (i, out))
        pids = sp.wait_workers(2, timeout=8)
        time.sleep(0.3)
        m1, w1 = fd_targets(sp.pid), [fd_count(p) for p in pids]
        eq(len(m1), len(m0), "master fds before %r after %r" % (m0, m1))
        eq(sorted(w1), sorted(w0), "worker fd counts")
        eq(http_get(port, "/plaintext")[0], 200, "still serving")
        _, gen, _, _ = status(sp)
        eq(gen, 52, "generation after 51 reloads")
    finally:
        sp.stop()


@tap.case
def reload_applies_error_log_and_keeps_pid_file():
    port = free_port()
    sp = Spindle(services([port]), workers=1)
    sp.start(ports=[port])
    try:
        before = sp.wait_workers(1)
        new_log = os.path.join(sp.dir, "new-error.log")
        text = open(sp.conf).read()
        text = text.replace("error_log = %s" % sp.log, "error_log = %s" % new_log)
        text = text.replace("pid_file = %s" % sp.pid_file,
                            "pid_file = %s" % os.path.join(sp.dir, "other.pid"))
        with open(sp.conf, "w") as f:
            f.write(text)
        rc, out = sp.ctl("reload")
        eq(rc, 0, "reload: " + out)
        after = sp.wait_workers(1, exclude=before)
        check(os.path.exists(new_log), "new error log opened")
        check(re.search(r"pid_file changed .*restart to apply", open(sp.log).read()),
              "warning about pid_file in the log")
        eq(sp.ctl("reload")[0], 0, "second reload")
        sp.wait_workers(1, exclude=after)
        logged = open(new_log).read()
        check("reload" in logged and "worker 0 %d" % after[0] in logged,
              "master and new workers write to the new log:\n" + logged)
        check(os.path.exists(sp.pid_file), "pid file kept")
        check(not os.path.exists(os.path.join(sp.dir, "other.pid")), "no new pid file")
    finally:
        sp.stop()


@tap.case
def failed_start_undoes_new_address_and_error_log():
    """A reload that gets as far as starting workers, after opening a new
    address, extra slots and switching the error log, undoes all three when
    the workers fail."""
    port, port2 = free_port(), free_port()
    sp = Spindle(services([port]), workers=1, master="slots = 1\n")
    sp.start(ports=[port])
    try:
        before = sp.wait_workers(1)
        eq(listen_slots(sp), {port: 1}, "slots before")
        new_log = os.path.join(sp.dir, "new-error.log")
        sp.write_conf(services([port, port2], "root = %s/missing\n" % sp.dir), workers=1,
                      master="slots = 3\n")
        text = open(sp.conf).read().replace("error_log = %s" % sp.log, "error_log = %s" % new_log)
        with open(sp.conf, "w") as f:
            f.write(text)
        rc, out = sp.ctl("reload")
        check(rc != 0, "a reload whose workers fail was reported as success: " + out)
        check("new workers failed" in out, "fails at the start of the workers: " + out)
        # The failed worker may still be exiting with its copies of the new
        # sockets when the answer comes; the master's are closed already.
        check(wait_for(lambda: not listening_on(port2), 5.0), "the new address is closed again")
        eq(listen_slots(sp), {port: 1}, "the extra slots are closed again")
        check(os.path.exists(new_log) and "error log is now" in open(new_log).read(),
              "the reload had switched to the new log")
        eq(sp.ctl("reopen")[0], 0, "reopen")
        check(wait_for(lambda: "reopen requested" in open(sp.log).read(), 3),
              "the master logs to its old error log again")
        new = open(new_log).read()
        check("reload failed" not in new and "reopen requested" not in new,
              "nothing after the failure in the new log:\n" + new)
        eq(sp.workers(), before, "workers kept")
        eq(http_get(port, "/plaintext")[0], 200, "still serving")
    finally:
        sp.stop()


@tap.case
def sighup_and_concurrent_reloads():
    port = free_port()
    sp = Spindle(services([port]), workers=1)
    sp.start(ports=[port])
    try:
        before = sp.wait_workers(1)
        import signal
        import threading
        results = []

        def ctl():
            results.append(sp.ctl("reload"))

        threads = [threading.Thread(target=ctl) for _ in range(3)]
        for t in threads:
            t.start()
        sp.signal(signal.SIGHUP)
        for t in threads:
            t.join(30)
        eq([r[0] for r in results], [0, 0, 0], "concurrent reloads all succeed: %r" % results)
        sp.wait_workers(1, exclude=before, timeout=8)
        _, gen, _, _ = status(sp)
        check(gen >= 4, "every reload ran (generation %d)" % gen)
        eq(http_get(port, "/plaintext")[0], 200, "serving")
        check(wait_port(port), "port open")
    finally:
        sp.stop()


if __name__ == "__main__":
    tap.run()
