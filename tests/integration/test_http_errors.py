#!/usr/bin/env python3
"""Every error the http service answers, with the right code, a short body,
and (for malformed input) Connection: close followed by the close itself;
request smuggling attempts; timeouts."""
import errno
import os
import re
import socket
import time

from harness import Spindle, Tap, check, eq, free_port, wait_for
from httpclient import Conn, build, chunked, write_file

tap = Tap()
PORT = free_port()
SHORT = free_port()
STRICT = free_port()
BIGHEAD = free_port()
S = None
ACCESS = None
# Far more than the socket buffers of one connection hold on loopback.
BIG = os.urandom(1 << 20) * 16


def setup():
    global S, ACCESS
    S = Spindle("")
    ACCESS = os.path.join(S.dir, "access.log")
    root = os.path.join(S.dir, "www")
    write_file(os.path.join(root, "index.html"), "home\n")
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(BIG)
    S.write_conf("""
[http main]
listen = 127.0.0.1:%d
root = %s
return /a = 200 text/plain AAA
max_header_size = 2k
max_body_size = 1k
access_log = %s

[http short]
listen = 127.0.0.1:%d
root = %s
return /a = 200 text/plain AAA
header_timeout = 300ms
body_timeout = 300ms
send_timeout = 1s
access_log = %s

[http strict]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
max_body_size = 0
keepalive_timeout = 0

[http bighead]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
max_header_size = 64k
""" % (PORT, root, ACCESS, SHORT, root, ACCESS, STRICT, BIGHEAD))
    S.start(ports=[PORT, SHORT, STRICT, BIGHEAD])


def expect_error(raw, status, port=PORT, closes=True):
    """Sends raw, expects one response with status; returns it."""
    with Conn(port) as c:
        c.send(raw)
        r = c.response()
        eq(r.status, status, "status for %r" % raw[:80])
        check(r.body.startswith(b"%d " % status), "short body names the status: %r" % r.body)
        eq(r.header("content-type"), "text/plain", "error body type")
        if closes:
            eq(r.header("connection"), "close", "Connection: close for %r" % raw[:80])
            check(c.closed(), "connection closed after %d" % status)
        else:
            check(r.header("connection") is None, "connection kept")
            eq(c.request("GET", "/a").body, b"AAA", "next request on the same connection")
        return r


@tap.case
def malformed_requests_get_400_and_close():
    for raw in [b"HELLO\r\n\r\n",
                b"GET /a HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
                b"GET /a HTTP/1.1\r\nHost: x\r\nName : v\r\n\r\n",
                b"GET /a HTTP/1.1\r\n\r\n",                       # no Host in 1.1
                b"GET /a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",  # two Hosts
                b"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
                b"GET /a HTTP/1.x\r\nHost: x\r\n\r\n",
                b"GET  /a HTTP/1.1\r\nHost: x\r\n\r\n",
                b"GET /a HTTP/1.1\rHost: x\r\n\r\n",
                b"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                b"GET /a HTTP/1.1\r\nHost: x\r\nX: a\x01b\r\n\r\n"]:
        expect_error(raw, 400)


@tap.case
def nothing_after_a_malformed_request_is_answered():
    with Conn(PORT) as c:
        c.send(b"BAD\r\n\r\n" + build("GET", "/a"))
        eq(c.response().status, 400, "400")
        check(c.closed(), "closed without answering the pipelined request")


@tap.case
def not_found_keeps_the_connection():
    r = expect_error(build("GET", "/nope"), 404, closes=False)
    eq(r.body, b"404 Not Found\n", "body")


@tap.case
def head_of_an_error_has_no_body():
    with Conn(PORT) as c:
        r = c.request("HEAD", "/nope")
        eq(r.status, 404, "status")
        check(int(r.header("content-length")) > 0, "length of the GET body")
        eq(c.request("GET", "/a").body, b"AAA", "no stray body before the next response")


@tap.case
def head_refused_with_an_error_that_closes_has_no_body():
    """A HEAD answered 413 (or 400 for a bad header) ends the connection; the
    answer must still be headers only, whatever Content-Length says."""
    for raw, status in ((build("HEAD", "/a", headers={"Content-Length": "5000"}), 413),
                        (b"HEAD /a HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n", 400)):
        with Conn(PORT) as c:
            c.send(raw)
            r = c.response(head_only=True)
            eq(r.status, status, "status")
            eq(r.header("connection"), "close", "close")
            check(int(r.header("content-length")) > 0, "length of the GET body")
            c.sock.settimeout(2.0)
            rest = b""
            try:
                while True:
                    chunk = c.sock.recv(4096)
                    if not chunk:
                        break
                    rest += chunk
            except (socket.timeout, ConnectionResetError):
                pass
            eq(c.buf + rest, b"", "bytes after the head of a %d to HEAD" % status)


@tap.case
def method_not_allowed_names_the_allowed_ones():
    r = expect_error(build("PUT", "/index.html", body=b"x"), 405, closes=False)
    eq(r.header("allow"), "GET, HEAD", "Allow for files")
    r = expect_error(build("DELETE", "/a"), 405, closes=False)
    eq(r.header("allow"), "GET, HEAD, POST", "Allow for a return path")
    r = expect_error(build("OPTIONS", "*"), 405, closes=False)
    check(r.header("allow"), "Allow for OPTIONS *")


@tap.case
def unknown_method_gets_501_and_keeps_the_connection():
    expect_error(build("BREW", "/a"), 501, closes=False)


@tap.case
def unknown_transfer_coding_gets_501_and_close():
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "gzip"}), 501)
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "gzip, chunked"}) +
                 chunked(b"x"), 501)


@tap.case
def unsupported_version_gets_505():
    expect_error(b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 505)
    expect_error(b"GET /a HTTP/3\r\nHost: x\r\n\r\n", 505)


@tap.case
def body_too_large_gets_413_and_close():
    expect_error(build("POST", "/a", body=b"x" * 1025), 413)
    # Chunked: known too large only while decoding.
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) +
                 chunked(b"y" * 2000, (600,)), 413)
    # Exactly the limit is fine.
    with Conn(PORT) as c:
        eq(c.request("POST", "/a", body=b"z" * 1024).status, 200, "1k body accepted")


@tap.case
def max_body_size_zero_refuses_any_body():
    expect_error(build("POST", "/a", body=b"x"), 413, port=STRICT)
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) + chunked(b"x"),
                 413, port=STRICT)
    with Conn(STRICT) as c:
        r = c.request("POST", "/a", headers={"Content-Length": "0"})
        eq(r.status, 200, "an empty body is fine")


@tap.case
def keepalive_timeout_zero_closes_after_each_response():
    with Conn(STRICT) as c:
        r = c.request("GET", "/a")
        eq((r.status, r.header("connection")), (200, "close"), "answered with close")
        check(c.closed(), "closed")


@tap.case
def heads_larger_than_the_stack_buffer_are_served_up_to_the_limit():
    with Conn(BIGHEAD) as c:
        for size in (20000, 60000):
            req = build("POST", "/a", headers={"X-Big": "b" * size}, body=b"x" * 50000)
            c.send(req[:size // 2])
            time.sleep(0.02)
            c.send(req[size // 2:] + build("GET", "/a"))
            eq(c.response().status, 200, "%d-byte head" % size)
            eq(c.response().body, b"AAA", "next request after the %d-byte head" % size)
    expect_error(build("GET", "/a", headers={"X-Big": "b" * 70000}), 431, port=BIGHEAD)
    expect_error(build("GET", "/" + "u" * 70000), 414, port=BIGHEAD)


@tap.case
def uri_too_long_gets_414():
    expect_error(build("GET", "/" + "a" * 3000), 414)


@tap.case
def header_too_large_gets_431():
    expect_error(build("GET", "/a", headers={"X-Big": "b" * 3000}), 431)
    expect_error(build("GET", "/a", headers={"X-H%d" % i: "v" for i in range(100)}), 431)


@tap.case
def content_length_with_transfer_encoding_is_refused():
    raw = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    expect_error(raw, 400)
    raw = (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
           b"Content-Length: 4\r\n\r\n0\r\n\r\n")
    expect_error(raw, 400)


@tap.case
def two_different_content_lengths_are_refused():
    raw = (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc")
    expect_error(raw, 400)
    raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 30\r\n\r\nabc"
    expect_error(raw, 400)


@tap.case
def bad_chunked_framing_gets_400():
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) +
                 b"zz\r\nhello\r\n0\r\n\r\n", 400)
    expect_error(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) +
                 b"5\r\nhelloXX0\r\n\r\n", 400)


@tap.case
def header_timeout_gets_408_and_close():
    with Conn(SHORT) as c:
        c.send(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = c.response()
        took = time.monotonic() - t0
        eq(r.status, 408, "status")
        eq(r.header("connection"), "close", "close")
        check(0.2 < took < 2.0, "after about 300ms (took %.2fs)" % took)
        check(c.closed(), "closed")


@tap.case
def a_stray_crlf_after_a_request_is_ignored():
    """RFC 9112 2.2: empty lines before a request line are ignored, so a CRLF
    after a request leaves the connection idle, not inside a head that
    header_timeout ends with an unsolicited 408."""
    with Conn(SHORT) as c:
        for extra in (b"\r\n", b"\n", b"\r\n\r\n"):
            c.send(build("GET", "/a") + extra)
            eq(c.response().body, b"AAA", "answer before %r" % extra)
            c.sock.settimeout(1.0)  # three header_timeouts
            try:
                data = c.sock.recv(100)
            except socket.timeout:
                data = None
            eq(data, None, "nothing unsolicited after %r" % extra)
            c.sock.settimeout(5.0)
        c.send(b"\r\n\r\n" + build("GET", "/a"))
        eq(c.response().body, b"AAA", "empty lines before a request line")
        c.send(b"\r\n")
        time.sleep(0.1)
        c.send(build("GET", "/a"))
        eq(c.response().body, b"AAA", "a CRLF alone, then a request")


@tap.case
def header_timeout_counts_from_the_first_byte_of_the_head():
    # A head trickling in slower than header_timeout in total fails even
    # though each piece arrives quickly.
    with Conn(SHORT) as c:
        t0 = time.monotonic()
        try:
            for b in b"GET /a HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"s" * 100:
                c.send(bytes([b]))
                time.sleep(0.01)
        except OSError:
            pass
        r = c.response()
        eq(r.status, 408, "slow head")
        check(time.monotonic() - t0 < 2.0, "in time")


@tap.case
def body_timeout_gets_408_and_close():
    with Conn(SHORT) as c:
        c.send(build("POST", "/a", headers={"Content-Length": "10"}) + b"abc")
        t0 = time.monotonic()
        r = c.response()
        eq(r.status, 408, "status")
        check(time.monotonic() - t0 < 2.0, "in time")
        check(c.closed(), "closed")
    with Conn(SHORT) as c:
        c.send(build("POST", "/a", headers={"Transfer-Encoding": "chunked"}) + b"5\r\nab")
        eq(c.response().status, 408, "chunked body timeout")


@tap.case
def a_pipelined_request_after_a_good_one_with_an_error_is_answered_in_order():
    with Conn(PORT) as c:
        c.send(build("GET", "/a") + build("GET", "/nope") + build("GET", "/a") + b"BAD\r\n\r\n")
        eq(c.response().status, 200, "first")
        eq(c.response().status, 404, "second")
        eq(c.response().status, 200, "third")
        r = c.response()
        eq(r.status, 400, "fourth")
        check(c.closed(), "closed after the 400")


@tap.case
def body_too_large_is_answered_while_the_client_is_still_sending():
    # 413 as soon as the head is read; the server reads and drops what the
    # client still sends for a while (lingering close) instead of stalling it.
    with Conn(PORT) as c:
        c.send(build("POST", "/a", headers={"Content-Length": str(50 << 20)}))
        sent = 0
        c.sock.settimeout(0.5)
        try:
            while sent < (4 << 20):
                c.sock.sendall(b"x" * 65536)
                sent += 65536
        except (socket.timeout, OSError):
            pass
        c.sock.settimeout(5)
        r = c.response()
        eq(r.status, 413, "413 read despite the unread body")


def access_lines(pattern, timeout=3.0):
    """Lines of the access log matching pattern (a regex), waiting up to
    timeout for the first (the log is written every second)."""
    def find():
        try:
            with open(ACCESS, errors="replace") as f:
                return [m for m in (re.search(pattern, l) for l in f.read().splitlines()) if m]
        except OSError:
            return []
    return wait_for(find, timeout)


@tap.case
def access_log_keeps_the_request_line_as_received():
    expect_error(b"GET /" + b"u" * 3000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414)
    expect_error(b"GET /a?v2 HTTP/2.0\r\nHost: x\r\n\r\n", 505)
    # The 414 is answered at max_header_size: the line as far as it was read.
    check(access_lines(r'"GET /u{1000,}" 414 '), "414 logged with its URI")
    check(access_lines(r'"GET /a\?v2 HTTP/2\.0" 505 '), "HTTP/2.0 logged as sent")


def small_window(rcvbuf):
    """A connection to SHORT whose receive buffer is fixed at rcvbuf."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", SHORT))
    return s


@tap.case
def send_timeout_drops_a_client_that_stops_reading():
    # Earlier cases' connections may still be lingering for a moment.
    eq(S.wait_connections(0, 3), 0, "no connection open before")
    s = small_window(4096)
    try:
        s.sendall(build("GET", "/big.bin?cut"))
        t0 = time.monotonic()
        eq(S.wait_connections(1, 0.5), 1, "the download is under way")
        eq(S.wait_connections(0, 5), 0, "the stalled connection was dropped")
        took = time.monotonic() - t0
        check(0.9 < took < 4.0, "dropped after send_timeout (took %.2f s)" % took)
        # What was in flight still arrives, then the stream ends well short.
        got = 0
        try:
            while True:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                got += len(chunk)
        except OSError as e:
            check(e.errno == errno.ECONNRESET, "EOF or reset, not %s" % e)
        check(got < len(BIG), "the response was cut (%d of %d bytes)" % (got, len(BIG)))
        # The access log counts the body bytes that went out, not the file's size.
        logged = access_lines(r'"GET /big\.bin\?cut HTTP/1\.1" 200 (\d+) ')
        check(logged, "the cut response is logged")
        sent = int(logged[0].group(1))
        check(got - 1000 <= sent < len(BIG) // 2,
              "logged %d body bytes; the client got %d of %d" % (sent, got, len(BIG)))
    finally:
        s.close()


@tap.case
def a_slow_reader_that_keeps_reading_gets_the_whole_file():
    # At most 128 kB per 20 ms: the server waits on the client for well over
    # send_timeout in all (its socket buffer holds 4 MB at most), but never
    # for send_timeout at a stretch (the kernel wakes a writer once a third
    # of its buffer is free: 1.3 MB, a few hundred ms here).
    s = small_window(64 << 10)
    try:
        s.sendall(build("GET", "/big.bin"))
        t0 = time.monotonic()
        data = bytearray()
        while True:
            time.sleep(0.02)
            try:
                chunk = s.recv(256 << 10)
            except OSError as e:
                check(False, "read failed after %d bytes: %s" % (len(data), e))
                break
            if not chunk:
                break
            data += chunk
            if len(data) > len(BIG) and data.find(b"\r\n\r\n") + 4 + len(BIG) <= len(data):
                break
        took = time.monotonic() - t0
        head, _, body = bytes(data).partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200 "), "200: %r" % head[:40])
        eq(len(body), len(BIG), "the whole file arrived (in %.1f s)" % took)
        check(body == BIG, "the bytes are the file's")
        check(took > 2.0, "the transfer took twice send_timeout or more (%.1f s)" % took)
    finally:
        s.close()


setup()
tap.run()
