"""Signals and process life: graceful and fast shutdown under load, a worker
killed under load, crash back-off, a master killed outright, log reopening."""
import os
import re
import signal
import socket
import time

from harness import (Spindle, Tap, alive, check, eq, free_port, group_members, http_get,
                     recv_response, wait_for)
from loadgen import HttpLoad, children, listening_on, peer_ports_of, wait_ready

tap = Tap()

BODY = b"Hello, World!"


def services(port, root=None):
    text = "[http main]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain Hello, World!\n" % port
    if root:
        text += "root = %s\n" % root
    return text


def assert_all_gone(sp, port):
    check(wait_for(lambda: not group_members(sp.pid), 3),
          "processes left: %r" % group_members(sp.pid))
    check(not listening_on(port), "port %d still listening" % port)
    check(not os.path.exists(sp.pid_file), "pid file left behind")
    check(not os.path.exists(sp.sock), "control socket left behind")


@tap.case
def sigquit_under_load_completes_in_flight_requests():
    port = free_port()
    sp = Spindle("", workers=2, shutdown_timeout="5s")
    root = os.path.join(sp.dir, "www")
    os.mkdir(root)
    big = os.urandom(4 << 20)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(big)
    sp.write_conf(services(port, root), workers=2, shutdown_timeout="5s")
    sp.start(ports=[port])
    load = None
    try:
        load = HttpLoad(port, conns=32, keepalive=True).start()
        check(load.wait_requests(200), "load: " + load.summary())

        # A download that a slow reader keeps in flight across the signal.
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        slow.settimeout(5)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        first = slow.recv(4096)
        check(first.startswith(b"HTTP/1.1 200"), "download started: %r" % first[:40])
        # And a request whose head is only half sent when the signal comes.
        half = socket.create_connection(("127.0.0.1", port), timeout=5)
        half.sendall(b"GET /plaintext HTTP/1.1\r\nHo")
        half_port = half.getsockname()[1]
        check(wait_for(lambda: any(half_port in peer_ports_of(w, port) for w in children(sp.pid))),
              "half-sent request accepted before the signal")

        t_quit = time.monotonic()
        sp.signal(signal.SIGQUIT)
        check(sp.wait_log(r"draining \(", 2), "both workers draining")
        half.sendall(b"st: x\r\n\r\n")
        status, headers, body = recv_response(half)
        eq((status, body), (200, BODY), "half-sent request answered")
        eq(headers.get("connection", "").lower(), "close", "draining answer closes")
        half.close()

        data = first
        while True:
            chunk = slow.recv(65536)
            if not chunk:
                break
            data += chunk
            time.sleep(0.001)
        slow.close()
        head, _, got = data.partition(b"\r\n\r\n")
        eq(len(got), len(big), "download length")
        check(got == big, "download content")

        code = sp.wait_exit(10)
        eq(code, 0, "master exit status")
        load.stop()
        # Requests on open connections are answered (with "Connection:
        # close"); only new connections made after the signal may fail,
        # since nobody accepts them any more.
        eq([e for e in load.errors if not e[4]], [], "failed requests on open connections")
        eq([e for e in load.errors if e[0] < t_quit], [], "failures before the signal")
        check(sum("refused" in e[3] for e in load.errors) >= len(load.errors) // 2,
              "late connections are mostly refused, not reset: " + load.summary())
        assert_all_gone(sp, port)
    finally:
        if load:
            load.stop()
        sp.stop()


@tap.case
def sigterm_and_sigint_stop_quickly():
    for sig in (signal.SIGTERM, signal.SIGINT):
        port = free_port()
        sp = Spindle(services(port), workers=2, shutdown_timeout="20s")
        sp.start(ports=[port])
        try:
            idle = socket.create_connection(("127.0.0.1", port), timeout=5)
            idle.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            recv_response(idle)
            t0 = time.monotonic()
            sp.signal(sig)
            eq(sp.wait_exit(5), 0, "exit status after %s" % sig.name)
            check(time.monotonic() - t0 < 2.5, "%s took %.1fs" % (sig.name, time.monotonic() - t0))
            assert_all_gone(sp, port)
            idle.close()
        finally:
            sp.stop()


@tap.case
def killed_worker_is_replaced_and_others_unaffected():
    port = free_port()
    sp = Spindle(services(port), workers=2)
    sp.start(ports=[port])
    load = None
    try:
        workers = wait_ready(sp, 2)
        load = HttpLoad(port, conns=64, keepalive=True).start()
        check(load.wait_requests(500), "load: " + load.summary())
        victim = workers[0]
        victim_peers = peer_ports_of(victim, port)
        check(victim_peers, "the victim serves some of the clients")
        os.kill(victim, signal.SIGKILL)
        t0 = time.monotonic()
        replacement = []

        def replaced():
            kids = children(sp.pid)
            replacement[:] = [p for p in kids if p not in workers]
            return replacement

        check(wait_for(replaced, 1.0, step=0.005),
              "a replacement within a second: %r" % replacement)
        wait_ready(sp, 2)
        print("# replacement %d ready after %.3fs" % (replacement[0], time.monotonic() - t0))
        # The other worker accepted on the victim's slots meanwhile, so the
        # reconnecting clients may all be there; new connections reach the
        # replacement.
        fresh = []
        for _ in range(16):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(recv_response(s)[0], 200, "fresh connection answered")
            fresh.append(s)
        check(peer_ports_of(replacement[0], port), "the replacement serves new connections")
        for s in fresh:
            s.close()
        eq(len(children(sp.pid)), 2, "two workers")
        check(load.wait_requests(500), "load continues: " + load.summary())
        load.stop()
        others = [e for e in load.errors if e[2] not in victim_peers]
        eq(others, [], "errors on connections the victim did not hold")
        check(load.failed <= len(victim_peers), "at most one failure per victim connection: "
              + load.summary())
        rc, out = sp.ctl("status")
        check("pid=%d" % replacement[0] in out, "status lists the replacement: " + out)
        check(re.search(r"worker 0 \(pid %d, generation 1\) died: signal 9" % victim, sp.logs()),
              "death logged: " + sp.logs())
    finally:
        if load:
            load.stop()
        sp.stop()


@tap.case
def crashing_worker_backs_off():
    port = free_port()
    sp = Spindle(services(port), workers=1)
    sp.start(ports=[port])
    try:
        pid = wait_ready(sp, 1)[0]
        for i in range(4):
            os.kill(pid, signal.SIGKILL)
            pid = sp.wait_workers(1, exclude=[pid], timeout=3)[0]
        found = re.findall(r"worker 0 \(pid \d+, generation 1\) died: signal 9 \(Killed\); "
                           r"respawning in (\d+) ms", sp.logs())
        delays = [int(d) for d in found]
        eq(delays, [0, 100, 200, 400], "respawn delays in the log")
        eq(http_get(port, "/plaintext")[0], 200, "serving after the crashes")
    finally:
        sp.stop()


@tap.case
def workers_exit_when_master_is_killed():
    port = free_port()
    sp = Spindle(services(port), workers=2, shutdown_timeout="2s")
    sp.start(ports=[port])
    try:
        workers = sp.wait_workers(2)
        # A keep-alive client that stays idle: the drain has to close it.
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_response(idle)
        os.kill(sp.pid, signal.SIGKILL)
        sp.wait_exit(5)
        check(wait_for(lambda: not any(alive(p) for p in workers), 3.0),
              "workers still alive 3 s after the master died: %r" % workers)
        check(not listening_on(port), "port still listening")
        idle.close()
    finally:
        sp.stop()


@tap.case
def sigusr1_reopens_logs():
    port = free_port()
    sp = Spindle(services(port), workers=1)
    sp.start(ports=[port])
    try:
        worker = sp.wait_workers(1)[0]
        os.rename(sp.log, sp.log + ".1")
        sp.signal(signal.SIGUSR1)
        check(wait_for(lambda: os.path.exists(sp.log), 2), "new error log created")
        # The worker writes its next line (its drain) into the new file too.
        eq(sp.ctl("reload")[0], 0, "reload")
        check(wait_for(lambda: "worker 0 %d: draining" % worker in open(sp.log).read(), 3),
              "worker line in the new log:\n" + open(sp.log).read())
        with open(sp.log + ".1") as f:
            old = f.read()
        check("reload" not in old, "reload logged into the rotated file")
    finally:
        sp.stop()


def start_download(port, path="/big.bin"):
    """A download that a slow reader keeps in flight: returns the socket and
    the first bytes read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path).encode())
    first = s.recv(4096)
    check(first.startswith(b"HTTP/1.1 200"), "download started: %r" % first[:40])
    return s, first


def finish_download(s, first, size):
    """Reads the rest of a download of size bytes; returns its body."""
    head, _, body = first.partition(b"\r\n\r\n")
    chunks = [body]
    got = len(body)
    while got < size:
        try:
            chunk = s.recv(1 << 20)
        except OSError as e:
            raise AssertionError("download cut after %d bytes: %s" % (got, e))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    s.close()
    return b"".join(chunks)


def server_with_big_file(workers=2):
    port = free_port()
    sp = Spindle("", workers=workers, shutdown_timeout="10s")
    root = os.path.join(sp.dir, "www")
    os.mkdir(root)
    big = os.urandom(24 << 20)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(big)
    sp.write_conf(services(port, root), workers=workers, shutdown_timeout="10s")
    return port, sp, big


@tap.case
def workers_ignore_hup_usr1_usr2_sent_to_every_process():
    # killall -USR1 spindle, systemctl kill -s USR1: every process gets it.
    port, sp, big = server_with_big_file()
    sp.start(ports=[port])
    try:
        workers = wait_ready(sp, 2)
        dl, first = start_download(port)
        os.killpg(sp.pid, signal.SIGUSR1)
        for w in workers:
            os.kill(w, signal.SIGHUP)
            os.kill(w, signal.SIGUSR2)
        time.sleep(0.3)
        eq([w for w in workers if not alive(w)], [], "workers killed by HUP/USR1/USR2")
        check(finish_download(dl, first, len(big)) == big, "download completed across the signals")
        eq(http_get(port, "/plaintext")[0], 200, "serving after the signals")
        eq(sorted(children(sp.pid)), workers, "the same workers")
    finally:
        sp.stop()


@tap.case
def worker_drains_on_quit_and_stops_on_term():
    port, sp, big = server_with_big_file()
    sp.start(ports=[port])
    try:
        workers = wait_ready(sp, 2)
        dl, first = start_download(port)
        lport = dl.getsockname()[1]
        server = [w for w in workers if lport in peer_ports_of(w, port)]
        eq(len(server), 1, "one worker serves the download")
        os.kill(server[0], signal.SIGQUIT)
        check(wait_for(lambda: "draining (SIGQUIT)" in sp.logs(), 3),
              "drain logged: " + sp.logs())
        check(finish_download(dl, first, len(big)) == big, "download completed across SIGQUIT")
        check(wait_for(lambda: not alive(server[0]), 5), "drained worker exited")

        other = [w for w in workers if w != server[0]][0]
        t0 = time.monotonic()
        os.kill(other, signal.SIGTERM)
        check(wait_for(lambda: not alive(other), 3), "worker still alive after SIGTERM")
        check(time.monotonic() - t0 < 2.5, "SIGTERM took %.1fs" % (time.monotonic() - t0))
        check(wait_for(lambda: "SIGTERM: stopping" in sp.logs(), 2), "stop logged: " + sp.logs())
        wait_ready(sp, 2)
        eq(http_get(port, "/plaintext")[0], 200, "serving after the replacements")
    finally:
        sp.stop()


@tap.case
def sigusr2_to_every_process_upgrades_the_master_only():
    # killall -USR2 spindle: the master starts a binary upgrade
    # (test_upgrade.py); the workers ignore the signal and serve on.
    port = free_port()
    sp = Spindle(services(port), workers=2)
    sp.start(ports=[port])
    try:
        workers = wait_ready(sp, 2)
        os.killpg(sp.pid, signal.SIGUSR2)
        check(wait_for(lambda: re.search(r"the new master \(pid \d+\) is ready", sp.logs()), 5),
              "SIGUSR2 starts an upgrade: " + sp.logs())
        check(alive(sp.pid), "the old master alive after SIGUSR2")
        eq([w for w in workers if not alive(w)], [], "the old workers alive")
        eq(http_get(port, "/plaintext")[0], 200, "serving after SIGUSR2")
    finally:
        sp.stop()


@tap.case
def new_master_serves_at_once_after_kill_9():
    # systemd restarts a master that died only once its old workers are gone,
    # and a worker left holding its listener copies would take a share of the
    # new master's connections: the workers must go with the master, even a
    # busy or stopped one.
    port, sp, big = server_with_big_file()
    sp.start(ports=[port])
    sp2 = None
    stopped = None
    try:
        workers = wait_ready(sp, 2)
        dl, first = start_download(port)
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        idle.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n")
        recv_response(idle)
        lport = dl.getsockname()[1]
        stopped = [w for w in workers if lport not in peer_ports_of(w, port)][0]
        os.kill(stopped, signal.SIGSTOP)
        os.kill(sp.pid, signal.SIGKILL)
        sp.wait_exit(5)
        t0 = time.monotonic()
        check(wait_for(lambda: not any(alive(p) for p in workers), 2.0),
              "old workers alive %.1fs after the master died: %r"
              % (time.monotonic() - t0, [p for p in workers if alive(p)]))
        check(not listening_on(port), "port still listening without a master")

        sp2 = Spindle("", workers=2)
        for attr in ("dir", "conf", "pid_file", "sock", "log", "out"):
            setattr(sp2, attr, getattr(sp, attr))
        sp2.start(ports=[port])
        wait_ready(sp2, 2)
        print("# new master ready %.2fs after the old one died" % (time.monotonic() - t0))
        for _ in range(40):
            t1 = time.monotonic()
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                eq(recv_response(s)[0], 200, "answered by the new master's workers")
            check(time.monotonic() - t1 < 1.0, "a connection waited %.2fs" % (time.monotonic() - t1))
        dl.close()
        idle.close()
    finally:
        if stopped and alive(stopped):
            os.kill(stopped, signal.SIGKILL)
            os.kill(stopped, signal.SIGCONT)
        if sp2:
            sp2.stop()
        sp.stop()


if __name__ == "__main__":
    tap.run()
