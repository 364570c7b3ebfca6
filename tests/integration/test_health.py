#!/usr/bin/env python3
"""health = PATH and [master] drain_delay: 200 while serving; on a graceful
stop (SIGQUIT, -s quit) 503 for drain_delay while the listeners stay open and
everything else is served, then the stop as before; TERM and INT stay fast;
a reload never fails the check."""
import re
import signal
import socket
import subprocess
import threading
import time

from harness import Spindle, Tap, check, eq, free_port, recv_response

tap = Tap()


def services(port):
    return ("[http main]\nlisten = 127.0.0.1:%d\nhealth = /healthz\nstatus = /status\n"
            "return / = 200 text/plain home\n" % port)


def get(port, path, conn=None):
    """(status, body) of GET path on a new connection, or on conn (kept alive)."""
    s = conn or socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n"
               % (path, "" if conn else "Connection: close\r\n")).encode())
    st, headers, body = recv_response(s)
    if not conn:
        s.close()
    return st, body


def start(drain_delay=None, workers=2):
    port = free_port()
    master = "drain_delay = %s\n" % drain_delay if drain_delay else ""
    sp = Spindle(services(port), master=master, workers=workers)
    sp.start(ports=[port])
    sp.wait_ready(workers)
    return sp, port


@tap.case
def health_answers_ok_while_serving():
    sp, port = start()
    try:
        eq(get(port, "/healthz"), (200, b"ok\n"), "health")
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        st, h, body = recv_response(s, head_only=True)
        eq((st, h.get("cache-control"), h.get("content-length")), (200, "no-store", "3"), "HEAD")
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        eq(recv_response(s)[0], 405, "POST")
        s.close()
    finally:
        sp.stop()


def quit_and_watch(sp, port, how):
    """Stops sp gracefully (how: 'signal' or 'ctl') while polling /healthz and /
    on new connections and on one kept-alive connection; returns the samples
    (time since the stop, health status, home status) and the exit time."""
    ka = socket.create_connection(("127.0.0.1", port), timeout=5)
    eq(get(port, "/", ka)[0], 200, "keep-alive connection")
    samples = []
    t0 = time.monotonic()
    if how == "signal":
        sp.signal(signal.SIGQUIT)
    else:
        threading.Thread(target=sp.ctl, args=("quit",), daemon=True).start()
    exited = None
    while time.monotonic() - t0 < 5:
        if sp.proc.poll() is not None:
            exited = time.monotonic() - t0
            break
        try:
            h = get(port, "/healthz")[0]
            home = get(port, "/")[0]
            ka_h = get(port, "/healthz", ka)[0] if ka else None
        except (OSError, ConnectionError) as e:
            samples.append((time.monotonic() - t0, "error", str(e)))
            ka = None
            time.sleep(0.02)
            continue
        samples.append((time.monotonic() - t0, h, home, ka_h))
        time.sleep(0.02)
    if exited is None and sp.wait_exit(5) is not None:
        exited = time.monotonic() - t0
    return samples, exited


@tap.case
def sigquit_with_drain_delay_fails_health_then_stops():
    sp, port = start("1s")
    try:
        eq(get(port, "/healthz")[0], 200, "health before")
        samples, exited = quit_and_watch(sp, port, "signal")
        check(exited is not None, "master did not exit: %r" % samples[-3:])
        early = [s for s in samples if s[0] < 0.8]
        check(len(early) >= 5, "too few samples: %r" % samples)
        # The first sample may precede the message; from 0.1 s on, 503 with / served.
        settled = [s for s in early if s[0] > 0.1]
        check(settled and all(s[1:] == (503, 200, 503) for s in settled),
              "during drain_delay: %r" % early)
        check(exited >= 0.95, "exited after %.2f s, before drain_delay" % exited)
        check(exited < 3.5, "exited after %.2f s" % exited)
        check(sp.log_count(r"draining in 1000 ms") == 1, sp.logs())
    finally:
        sp.stop()


@tap.case
def spindle_s_quit_waits_for_drain_delay_too():
    sp, port = start("1s")
    try:
        samples, exited = quit_and_watch(sp, port, "ctl")
        check(exited is not None and exited >= 0.95, "exited after %r" % exited)
        check(any(s[1] == 503 and s[2] == 200 for s in samples if len(s) == 4), repr(samples))
    finally:
        sp.stop()


@tap.case
def without_drain_delay_a_graceful_stop_is_unchanged():
    sp, port = start()
    try:
        samples, exited = quit_and_watch(sp, port, "signal")
        check(exited is not None and exited < 0.9, "exited after %r" % exited)
        check(not any(len(s) == 4 and s[1] == 503 for s in samples), repr(samples))
        eq(sp.log_count(r"draining in"), 0, "drain_delay message")
    finally:
        sp.stop()


@tap.case
def term_int_and_quit_then_term_are_fast():
    for sigs in ([signal.SIGTERM], [signal.SIGINT], [signal.SIGQUIT, signal.SIGTERM]):
        sp, port = start("5s")
        try:
            t0 = time.monotonic()
            for sig in sigs:
                sp.signal(sig)
                time.sleep(0.2)
            eq(sp.wait_exit(4) is not None, True, "exit after %r" % sigs)
            check(time.monotonic() - t0 < 2.5, "%r took %.2f s" % (sigs, time.monotonic() - t0))
        finally:
            sp.stop()


@tap.case
def reload_keeps_health_ok():
    sp, port = start("1s")
    try:
        stop = threading.Event()
        bad = []

        def poll():
            while not stop.is_set():
                try:
                    st = get(port, "/healthz")[0]
                except (OSError, ConnectionError) as e:
                    st = str(e)
                if st != 200:
                    bad.append(st)
                time.sleep(0.005)
        t = threading.Thread(target=poll, daemon=True)
        t.start()
        for _ in range(3):
            old = sp.workers()
            sp.signal(signal.SIGHUP)
            sp.wait_workers(2, timeout=10, exclude=old)
        time.sleep(0.3)
        stop.set()
        t.join()
        eq(bad, [], "health answers other than 200 across reloads")
    finally:
        sp.stop()


@tap.case
def config_errors():
    port = free_port()
    sp = Spindle("")
    try:
        for text, want in (
                ("[http main]\nlisten = 127.0.0.1:%d\nhealth = healthz\n",
                 r":\d+: invalid health 'healthz'"),
                ("[http main]\nlisten = 127.0.0.1:%d\nhealth = /s\nstatus = /s\n",
                 r"the status and health pages have one path '/s'"),
                ("[http main]\nlisten = 127.0.0.1:%d\nhealth = /h\nreturn /h = 200 text/plain x\n",
                 r":\d+: return path '/h' is also the health path"),
                ("[http main]\nlisten = 127.0.0.1:%d\n", r":\d+: .*drain_delay.*0\.\.1h")):
            sp.write_conf(text % port, master="" if "health" in text else "drain_delay = 2h")
            r = subprocess.run([sp.bin, "-t", "-c", sp.conf], capture_output=True, text=True,
                               cwd=sp.dir)
            out = r.stdout + r.stderr
            check(r.returncode != 0 and re.search(want, out), "%s: %s" % (want, out))
    finally:
        sp.stop()


if __name__ == "__main__":
    tap.run()
