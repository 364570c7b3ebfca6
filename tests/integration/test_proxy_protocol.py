#!/usr/bin/env python3
"""listen = ADDR proxy_protocol: the PROXY protocol header (v1 and v2) read at
the start of each connection before the service sees it; the client address
it carries in the access log, in the X-Forwarded-For the proxy adds and in
what a handler sees; a missing, malformed or split header; every service
(http and echo) gets it; the listen flags' syntax."""
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import time

from harness import Spindle, Tap, check, eq, free_port, recv_response, wait_for
from upstream import Upstream

tap = Tap()

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(src="203.0.113.7", dst="127.0.0.1", sport=56324, dport=80, proto="TCP4"):
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(src="198.51.100.9", dst="127.0.0.1", sport=4660, dport=80, cmd=1, tlvs=b""):
    body = (socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!HH", sport, dport)
            + tlvs)
    return V2_SIG + bytes([0x20 | cmd, 0x11]) + struct.pack("!H", len(body)) + body


def conf(port, upstream_port, echo_port, access_log):
    return """
[upstream app]
server = 127.0.0.1:%d

[http main]
listen = 127.0.0.1:%d proxy_protocol
access_log = %s
status = /status
return /plaintext = 200 text/plain Hello, World!
proxy /api = app

[echo e]
listen = 127.0.0.1:%d   proxy_protocol
""" % (upstream_port, port, access_log, echo_port)


class Setup:
    def __init__(self, threads=1):
        self.port, self.echo_port = free_port(), free_port()
        self.up = Upstream()
        self.sp = Spindle("", threads=threads)
        self.access_log = os.path.join(self.sp.dir, "access.log")
        self.sp.write_conf(conf(self.port, self.up.port, self.echo_port, self.access_log),
                           threads=threads)
        self.sp.start(ports=[self.port, self.echo_port])

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.sp.stop()
        self.up.stop()

    def access_lines(self, n, timeout=5.0):
        """The access log's lines once it has n of them (it is flushed per batch)."""
        def read():
            try:
                with open(self.access_log) as f:
                    lines = f.read().splitlines()
            except OSError:
                return None
            return lines if len(lines) >= n else None
        return wait_for(read, timeout) or []

    def status(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(v1(src="192.0.2.1") + b"GET /status HTTP/1.1\r\nHost: x\r\n"
                  b"Connection: close\r\n\r\n")
        st, _, body = recv_response(s)
        s.close()
        eq(st, 200, "status page")
        return json.loads(body)


def send_parts(port, parts, pause=0.05):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    for p in parts:
        s.sendall(p)
        time.sleep(pause)
    return s


def closed_without_answer(s, timeout=5.0):
    """True when the server closes s without sending a byte."""
    s.settimeout(timeout)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    s.close()
    return data == b""


REQ = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"


@tap.case
def v1_and_v2_addresses_in_access_log_and_x_forwarded_for():
    with Setup() as x:
        # v1 in the same packet as the request, two requests on the connection.
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(v1() + REQ)
        st, _, body = recv_response(s)
        eq((st, body), (200, b"Hello, World!"), "v1 answer")
        s.sendall(b"GET /api/who HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.9.9.9\r\n\r\n")
        st, _, body = recv_response(s)
        eq(st, 200, "proxied answer")
        xff = [v for k, v in json.loads(body)["headers"] if k.lower() == "x-forwarded-for"]
        eq(xff, ["10.9.9.9, 203.0.113.7"], "X-Forwarded-For carries the PROXY address")
        s.close()
        # v2 with a TLV to skip.
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(v2(tlvs=b"\x04\x00\x03abc") + REQ)
        eq(recv_response(s)[0], 200, "v2 answer")
        s.close()
        # v2 LOCAL (a balancer's own health check) and v1 UNKNOWN: the socket's peer.
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(v2(cmd=0) + REQ)
        eq(recv_response(s)[0], 200, "v2 LOCAL answer")
        s.close()
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(b"PROXY UNKNOWN\r\n" + REQ)
        eq(recv_response(s)[0], 200, "v1 UNKNOWN answer")
        s.close()
        # IPv6 in v1.
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(v1(src="2001:db8::7", dst="::1", proto="TCP6") + REQ)
        eq(recv_response(s)[0], 200, "TCP6 answer")
        s.close()

        lines = x.access_lines(6)
        addrs = [l.split(" ", 1)[0] for l in lines]
        eq(addrs, ["203.0.113.7", "203.0.113.7", "198.51.100.9", "127.0.0.1", "127.0.0.1",
                   "2001:db8::7"], "access log addresses")


@tap.case
def header_in_pieces_and_nothing_consumed_past_it():
    with Setup() as x:
        h = v1(src="203.0.113.8")
        s = send_parts(x.port, [h[:3], h[3:20], h[20:], REQ[:5], REQ[5:]])
        eq(recv_response(s)[:1], (200,), "v1 sent in pieces")
        s.close()
        h = v2(src="198.51.100.10", tlvs=b"\x04\x00\x05hello")
        s = send_parts(x.port, [h[:7], h[7:15], h[15:17], h[17:] + REQ])
        eq(recv_response(s)[:1], (200,), "v2 sent in pieces")
        s.close()
        addrs = [l.split(" ", 1)[0] for l in x.access_lines(2)]
        eq(addrs, ["203.0.113.8", "198.51.100.10"], "addresses")
        # The echo service gets exactly the bytes after the header, whatever
        # the packets.
        e = send_parts(x.echo_port, [v1()[:10], v1()[10:] + b"hel", b"lo"])
        got = b""
        while len(got) < 5:
            got += e.recv(100)
        eq(got, b"hello", "echo after the header")
        e.close()


@tap.case
def missing_or_malformed_header_closes_and_serving_goes_on():
    with Setup() as x:
        bad = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",             # no header at all
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n" + REQ,       # a port missing
            b"PROXY TCP4 1.2.3.999 5.6.7.8 1 2\r\n" + REQ,   # not an address
            b"PROXY " + b"1" * 120,                          # no line end in 107 bytes
            b"\r\n\r\n\x00\r\nQUIX\n\x21\x11\x00\x0c" + b"\x00" * 12 + REQ,  # bad signature
            V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12 + REQ,               # version 3
        ]
        for b in bad:
            s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
            s.sendall(b)
            check(closed_without_answer(s), "answered %r" % b[:40])
        e = socket.create_connection(("127.0.0.1", x.echo_port), timeout=5)
        e.sendall(b"hello\r\n")
        check(closed_without_answer(e), "echo answered without a header")
        # Closed before the header ends.
        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(b"PROXY TCP4 1.2")
        s.shutdown(socket.SHUT_WR)
        check(closed_without_answer(s), "half a header answered")

        s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        s.sendall(v1() + REQ)
        eq(recv_response(s)[0], 200, "still serving")
        s.close()
        eq(x.status()["proxy_protocol_refused"], 8, "refusals counted")
        log = x.sp.logs()
        check(re.search(r"PROXY protocol: closing the connection from 127\.0\.0\.1:\d+: "
                        r"no valid PROXY header \(1 refused so far\)", log), log)
        check(not re.search(r"\[error\]|\berror\b.*PROXY", log), "logged as an error:\n" + log)


@tap.case
def a_header_not_done_in_10_s_closes():
    with Setup() as x:
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", x.port), timeout=15)
        s.sendall(b"PROXY TCP4 203.0.113.7 ")
        # Meanwhile other connections are served.
        c = socket.create_connection(("127.0.0.1", x.port), timeout=5)
        c.sendall(v1() + REQ)
        eq(recv_response(c)[0], 200, "served while another header is pending")
        c.close()
        check(closed_without_answer(s, timeout=15), "answered")
        waited = time.monotonic() - t0
        check(9.5 < waited < 12, "closed after %.1f s" % waited)
        check(x.sp.wait_log(r"no PROXY header in time", timeout=2), x.sp.logs())


@tap.case
def threads_and_many_connections_keep_their_own_addresses():
    with Setup(threads=2) as x:
        socks = []
        for i in range(40):
            s = socket.create_connection(("127.0.0.1", x.port), timeout=5)
            s.sendall(v1(src="10.0.%d.%d" % (i // 10, i)))
            socks.append(s)
        for s in socks:
            s.sendall(REQ)
        for s in socks:
            eq(recv_response(s)[0], 200, "answer")
        for s in socks:
            s.close()
        addrs = sorted(l.split(" ", 1)[0] for l in x.access_lines(40))
        eq(addrs, sorted("10.0.%d.%d" % (i // 10, i) for i in range(40)), "addresses")


@tap.case
def header_before_the_tls_handshake():
    port = free_port()
    sp = Spindle("")
    try:
        r = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-keyout", "site.key", "-out",
                            "site.pem", "-days", "30", "-subj", "/CN=localhost"],
                           cwd=sp.dir, capture_output=True, text=True)
        check(r.returncode == 0, "openssl: " + r.stderr)
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        log = os.path.join(sp.dir, "access.log")
        sp.write_conf("[http main]\nlisten = 127.0.0.1:%d proxy_protocol tls\n"
                      "tls_certificate = site.pem\ntls_certificate_key = site.key\n"
                      "access_log = %s\nreturn /hello = 200 text/plain Hello, TLS!\n"
                      % (port, log))
        sp.start(ports=[port])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(v2(src="198.51.100.77"))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        st, _, body = recv_response(s)
        eq((st, body), (200, b"Hello, TLS!"), "answer over TLS after the header")
        s.close()
        # A handshake without the header first is refused.
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            ctx.wrap_socket(raw, server_hostname="localhost")
            check(False, "handshake without a PROXY header succeeded")
        except (ssl.SSLError, OSError):
            pass
        raw.close()
        lines = wait_for(lambda: open(log).read().splitlines() if os.path.exists(log)
                         and open(log).read() else None, 5) or []
        eq([l.split(" ", 1)[0] for l in lines], ["198.51.100.77"], "access log")
    finally:
        sp.stop()


@tap.case
def listen_flags_any_order_and_unknown_flag_named():
    port = free_port()
    sp = Spindle("")
    try:
        def check_t(text):
            sp.write_conf(text)
            r = subprocess.run([sp.bin, "-t", "-c", sp.conf], capture_output=True, text=True,
                               cwd=sp.dir)
            return r.returncode, r.stdout + r.stderr
        rc, out = check_t("[echo e]\nlisten = 127.0.0.1:%d proxy_protocol\n" % port)
        eq(rc, 0, "proxy_protocol accepted: " + out)
        rc, out = check_t("[echo e]\nlisten = 127.0.0.1:%d proxy_protocol sideways\n" % port)
        check(rc != 0 and re.search(re.escape(sp.conf) + r":\d+: invalid listen .*unknown flag "
                                    r"'sideways' \(expected: tls, proxy_protocol\)", out), out)
        rc, out = check_t("[echo e]\nlisten = 127.0.0.1:%d tls proxy_protocol\n" % port)
        check(rc != 0 and "does not speak TLS" in out, out)
        rc, out = check_t("[http h]\nlisten = 127.0.0.1:%d proxy_protocol tls\n" % port)
        check(rc != 0 and "no tls_certificate" in out, "tls flag read after proxy_protocol: "
              + out)
    finally:
        sp.stop()


if __name__ == "__main__":
    tap.run()
