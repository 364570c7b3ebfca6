#!/usr/bin/env python3
"""The echo service: every byte comes back in order until the peer closes,
large streams, half-close, many clients, idle_timeout."""
import hashlib
import random
import socket
import threading
import time

from harness import Spindle, Tap, check, connect, eq, free_port
from httpclient import read_all, run_clients

tap = Tap()
PORT = free_port()
IDLE = free_port()
S = None


def setup():
    global S
    S = Spindle("""
[echo main]
listen = 127.0.0.1:%d

[echo idle]
listen = 127.0.0.1:%d
idle_timeout = 300ms
""" % (PORT, IDLE))
    S.start(ports=[PORT, IDLE])


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return out


@tap.case
def messages_come_back_in_order():
    with connect(PORT) as s:
        for i in range(50):
            msg = b"message %d\n" % i
            s.sendall(msg)
            eq(recv_exact(s, len(msg)), msg, "echo %d" % i)


@tap.case
def pipelined_messages_come_back_in_order():
    msgs = b"".join(b"<%d>" % i for i in range(5000))
    with connect(PORT) as s:
        s.sendall(msgs)
        eq(recv_exact(s, len(msgs)), msgs, "all bytes in order")


@tap.case
def one_megabyte_stream_with_a_concurrent_reader():
    data = random.Random(1).randbytes(1 << 20)
    with connect(PORT) as s:
        got = []

        def reader():
            got.append(recv_exact(s, len(data)))
        t = threading.Thread(target=reader)
        t.start()
        for i in range(0, len(data), 7919):  # odd-sized writes
            s.sendall(data[i:i + 7919])
        t.join(20)
        check(got, "reader finished")
        eq(hashlib.sha256(got[0]).hexdigest(), hashlib.sha256(data).hexdigest(), "sha256")


@tap.case
def half_close_gets_everything_back_then_eof():
    data = b"x" * 100000 + b"end"
    with connect(PORT) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        eq(read_all(s), data, "all bytes, then end of stream")


@tap.case
def many_concurrent_clients():
    def client(i, errors):
        with connect(PORT) as s:
            for k in range(30):
                msg = b"%d:%d;" % (i, k) * (k + 1)
                s.sendall(msg)
                if recv_exact(s, len(msg)) != msg:
                    errors.append((i, k))
    eq(run_clients(100, client), [], "errors")


@tap.case
def idle_timeout_closes_silent_connections():
    with connect(IDLE) as s:
        s.sendall(b"ping")
        eq(recv_exact(s, 4), b"ping", "echo")
        t0 = time.monotonic()
        eq(read_all(s, timeout=3), b"", "closed with nothing more")
        took = time.monotonic() - t0
        check(0.2 < took < 2.0, "after about 300ms (took %.2fs)" % took)
    with connect(IDLE) as s:
        for _ in range(6):
            time.sleep(0.15)
            s.sendall(b"k")
            eq(recv_exact(s, 1), b"k", "an active connection stays")


@tap.case
def default_service_keeps_idle_connections():
    with connect(PORT) as s:
        s.settimeout(1.0)
        s.sendall(b"a")
        eq(recv_exact(s, 1), b"a", "echo")
        try:
            data = s.recv(10)
            raise AssertionError("unexpected %r" % data)
        except socket.timeout:
            pass
        s.sendall(b"b")
        eq(recv_exact(s, 1), b"b", "still open after a second idle")


setup()
tap.run()
