#!/usr/bin/env python3
"""A blocking client library on fibers: the kvdemo module calls a real Redis
(Debian's redis-server, started here on a free port and stopped by pid)
through hiredis's blocking API.  With the system call hooks, 200 clients of
one worker with one thread each wait 0.2 s in BLPOP at the same time: every
one gets nil after at least 0.2 s and all are done within 1 s.  With
`hooks = off` the same run serialises on the worker's one thread: one answer
every 0.2 s, 40 s for the run.  GET/SET answers under the same concurrency are each
client's own."""
import os
import selectors
import shutil
import socket
import time

from harness import BIN, RedisServer, Spindle, Tap, check, eq, free_port, need

tap = Tap()
KVDEMO = os.path.join(os.path.dirname(BIN), "examples", "kvdemo", "kvdemo.so")
CLIENTS = 200
WAIT = 0.2
REDIS_SERVER = RedisServer()
REDIS = REDIS_SERVER.port
REDIS_PROC = None  # the server, once it runs


def frame(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def spindle(hooks):
    port = free_port()
    s = Spindle("[module kvdemo]\npath = %s\nredis = 127.0.0.1:%d\ntimeout = 30s\n\n"
                "[cmd main]\nlisten = 127.0.0.1:%d\ncommands = kvdemo\n"
                % (KVDEMO, REDIS, port), master="hooks = %s\n" % hooks)
    s.start(ports=[port])
    s.wait_ready(1)
    return s, port


def run_clients(port, request_of, want_of, deadline_s):
    """CLIENTS connections, each sends its request at once; returns
    {client: (seconds from its send to its whole answer, answer)} for those
    answered within deadline_s."""
    sel = selectors.DefaultSelector()
    socks = []
    try:
        for i in range(CLIENTS):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        sent = {}
        for i, s in enumerate(socks):
            s.sendall(request_of(i))
            sent[i] = time.monotonic()
            sel.register(s, selectors.EVENT_READ, i)
        got, done = {}, {}
        start = time.monotonic()
        while len(done) < CLIENTS and time.monotonic() - start < deadline_s:
            for key, _ in sel.select(timeout=0.05):
                i = key.data
                data = key.fileobj.recv(4096)
                got[i] = got.get(i, b"") + data
                if not data or len(got[i]) >= len(want_of(i)):
                    done[i] = (time.monotonic() - sent[i], got[i])
                    sel.unregister(key.fileobj)
        return done, time.monotonic() - start
    finally:
        for s in socks:
            s.close()


def setup():
    need(os.path.exists(KVDEMO),
         "examples/kvdemo/kvdemo.so was not built (configure found no hiredis: libhiredis-dev)")
    need(shutil.which("redis-server"), "redis-server not installed (Debian package redis-server)")
    global REDIS_PROC
    if not REDIS_PROC:
        REDIS_PROC = REDIS_SERVER.start()


@tap.case
def blpop_from_200_clients_waits_in_parallel_with_hooks():
    setup()
    s, port = spindle("on")
    try:
        # Warm the module's pool once (connect on first use), as a real
        # client population would have; the run below then measures waits.
        done, took = run_clients(port, lambda i: frame("kv.blpop", "empty", "0.01"),
                                 lambda i: b"*-1\r\n", 10)
        eq(len(done), CLIENTS, "every warm-up answered")
        done, took = run_clients(port, lambda i: frame("kv.blpop", "nothing:%d" % i, str(WAIT)),
                                 lambda i: b"*-1\r\n", 5)
        eq(len(done), CLIENTS, "every BLPOP answered")
        for i, (t, answer) in done.items():
            eq(answer, b"*-1\r\n", "client %d gets nil" % i)
            check(t >= WAIT, "client %d waited %.3f s, at least the server's %.1f s" % (i, t, WAIT))
        slowest = max(t for t, _ in done.values())
        print("# %d BLPOPs of %.1f s: all answered in %.3f s, each after %.3f .. %.3f s"
              % (CLIENTS, WAIT, took, min(t for t, _ in done.values()), slowest), flush=True)
        check(took < 1.0, "all %d done within 1 s (took %.2f s, slowest %.2f s)"
              % (CLIENTS, took, slowest))
    finally:
        s.stop()


@tap.case
def get_set_from_200_clients_each_get_their_own_answer():
    setup()
    s, port = spindle("on")
    try:
        val = lambda i: b"value-%d-%s" % (i, b"x" * (i % 50))
        done, _ = run_clients(port, lambda i: frame(b"kv.set", b"k%d" % i, val(i)) +
                              frame(b"kv.get", b"k%d" % i),
                              lambda i: b"+OK\r\n$%d\r\n%s\r\n" % (len(val(i)), val(i)), 10)
        eq(len(done), CLIENTS, "every client answered")
        for i, (_, answer) in done.items():
            eq(answer, b"+OK\r\n$%d\r\n%s\r\n" % (len(val(i)), val(i)), "client %d" % i)
    finally:
        s.stop()


@tap.case
def with_hooks_off_the_same_run_takes_at_least_10_s():
    """Serialised, the run needs 200 x 0.2 s = 40 s.  It is watched for 9 s
    only: a worker whose one thread stays blocked misses its heartbeats and
    the master replaces it after ten (docs/operations.md), which would cut
    the clients still waiting.  In 9 s at most 9 / 0.2 = 45 can be answered,
    one after the other, so the other 155 need at least 31 s more."""
    setup()
    s, port = spindle("off")
    try:
        done, took = run_clients(port, lambda i: frame("kv.blpop", "nothing:%d" % i, str(WAIT)),
                                 lambda i: b"*-1\r\n", 9)
        print("# hooks off: %d of %d answered in %.1f s" % (len(done), CLIENTS, took), flush=True)
        for i, (t, answer) in done.items():
            eq(answer, b"*-1\r\n", "client %d gets nil" % i)
        check(0 < len(done) <= 9 / WAIT + 1,
              "%d answered in 9 s: one at a time, the worker blocked in each call" % len(done))
        left = CLIENTS - len(done)
        check(took + left * WAIT >= 10,
              "the run takes at least %.1f s" % (took + left * WAIT))
        eq(s.log_count("heartbeats; killing it"), 0, "the worker was not replaced meanwhile")
    finally:
        s.stop()


tap.run()
