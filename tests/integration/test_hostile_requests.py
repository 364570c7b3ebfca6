#!/usr/bin/env python3
"""Malformed and hostile requests, one TAP line each: every one gets the
status docs/security.md promises (and a close where it says so), the worker
never dies, and a valid request still works at the end."""
import socket

from harness import Spindle, Tap, check, eq, free_port
from hostile import exchange, get_ok
from httpclient import wait_for

tap = Tap()
PORT = free_port()
S = None
WORKER = None

H = b"Host: x\r\n"
CLOSE, KEEP = "close", "keep"


def req(line=b"GET /a HTTP/1.1", headers=H, body=b""):
    return line + b"\r\n" + headers + b"\r\n" + body


def post(headers, body):
    return req(b"POST /a HTTP/1.1", H + headers, body)


TE = b"Transfer-Encoding: chunked\r\n"

# (name, raw request, expected status or None for a close without one,
#  CLOSE or KEEP).  Limits of the service below: max_header_size 4k (the
#  target may be 4k - 32), max_body_size 1k, 64 header lines.
CASES = [
    # methods
    ("method_lowercase_is_unknown", req(b"get /a HTTP/1.1"), 501, KEEP),
    ("method_unknown_token", req(b"BREW /a HTTP/1.1"), 501, KEEP),
    ("method_with_separator", req(b"G(T /a HTTP/1.1"), 400, CLOSE),
    ("method_with_nul", req(b"GE\x00T /a HTTP/1.1"), 400, CLOSE),
    ("method_after_space", req(b" GET /a HTTP/1.1"), 400, CLOSE),
    ("method_missing", req(b"/a HTTP/1.1"), 400, CLOSE),
    ("method_tab_separator", req(b"GET\t/a HTTP/1.1"), 400, CLOSE),
    ("method_two_spaces", req(b"GET  /a HTTP/1.1"), 400, CLOSE),
    ("method_put_not_allowed", req(b"PUT /a HTTP/1.1", H + b"Content-Length: 1\r\n", b"x"),
     405, KEEP),
    ("method_options_asterisk", req(b"OPTIONS * HTTP/1.1"), 405, KEEP),
    ("method_get_asterisk", req(b"GET * HTTP/1.1"), 400, CLOSE),
    ("method_connect_origin_form", req(b"CONNECT /a HTTP/1.1"), 400, CLOSE),
    ("method_utf8_bytes", req(b"G\xc3\x89T /a HTTP/1.1"), 400, CLOSE),
    # versions
    ("version_http2", req(b"GET /a HTTP/2.0"), 505, CLOSE),
    ("version_http09", req(b"GET /a HTTP/0.9"), 505, CLOSE),
    ("version_http3_no_minor", req(b"GET /a HTTP/3"), 505, CLOSE),
    ("version_minor_letter", req(b"GET /a HTTP/1.x"), 400, CLOSE),
    ("version_lowercase", req(b"GET /a http/1.1"), 400, CLOSE),
    ("version_missing_minor", req(b"GET /a HTTP/1"), 400, CLOSE),
    ("version_two_digit_minor", req(b"GET /a HTTP/1.10"), 400, CLOSE),
    ("version_trailing_space", req(b"GET /a HTTP/1.1 "), 400, CLOSE),
    ("version_missing", req(b"GET /a"), 400, CLOSE),
    ("version_garbage", req(b"GET /a HTTX/1.1"), 400, CLOSE),
    # targets and percent-encoding
    ("target_nul", req(b"GET /a\x00b HTTP/1.1"), 400, CLOSE),
    ("target_control_char", req(b"GET /a\x01 HTTP/1.1"), 400, CLOSE),
    ("target_del", req(b"GET /a\x7f HTTP/1.1"), 400, CLOSE),
    ("target_fragment", req(b"GET /a#x HTTP/1.1"), 400, CLOSE),
    ("target_relative", req(b"GET a HTTP/1.1"), 400, CLOSE),
    ("pct_bad_hex", req(b"GET /a%zz HTTP/1.1"), 400, CLOSE),
    ("pct_truncated", req(b"GET /a%4 HTTP/1.1"), 400, CLOSE),
    ("pct_at_end", req(b"GET /a% HTTP/1.1"), 400, CLOSE),
    ("pct_encoded_nul", req(b"GET /a%00 HTTP/1.1"), 400, CLOSE),
    ("pct_dotdot_above_root", req(b"GET /%2e%2e/etc/passwd HTTP/1.1"), 400, CLOSE),
    ("dotdot_above_root", req(b"GET /../../etc/passwd HTTP/1.1"), 400, CLOSE),
    ("target_too_long", req(b"GET /" + b"a" * 5000 + b" HTTP/1.1"), 414, CLOSE),
    # absolute form
    ("absolute_form_ok", req(b"GET http://localhost/a HTTP/1.1"), 200, KEEP),
    ("absolute_form_ftp", req(b"GET ftp://x/a HTTP/1.1"), 400, CLOSE),
    ("absolute_form_one_slash", req(b"GET http:/a HTTP/1.1"), 400, CLOSE),
    ("absolute_form_no_scheme", req(b"GET //x/a HTTP/1.1"), 404, KEEP),
    ("absolute_form_userinfo", req(b"GET http://u@x/a HTTP/1.1"), 400, CLOSE),
    ("absolute_form_space_in_host", req(b"GET http://a b/a HTTP/1.1"), 400, CLOSE),
    # header syntax
    ("header_without_colon", req(headers=H + b"Bad Header\r\n"), 400, CLOSE),
    ("header_space_before_colon", req(headers=H + b"Name : v\r\n"), 400, CLOSE),
    ("header_empty_name", req(headers=H + b": v\r\n"), 400, CLOSE),
    ("header_name_with_space", req(headers=H + b"Na me: v\r\n"), 400, CLOSE),
    ("header_name_nul", req(headers=H + b"N\x00: v\r\n"), 400, CLOSE),
    ("header_value_nul", req(headers=H + b"X: a\x00b\r\n"), 400, CLOSE),
    ("header_value_control", req(headers=H + b"X: a\x01b\r\n"), 400, CLOSE),
    ("header_value_del", req(headers=H + b"X: a\x7fb\r\n"), 400, CLOSE),
    ("header_value_escape", req(headers=H + b"X: \x1b[31m\r\n"), 400, CLOSE),
    ("obs_fold_space", req(headers=H + b"X: a\r\n b\r\n"), 400, CLOSE),
    ("obs_fold_tab", req(headers=H + b"X: a\r\n\tb\r\n"), 400, CLOSE),
    ("bare_cr_in_request_line", b"GET /a HTTP/1.1\rHost: x\r\n\r\n", 400, CLOSE),
    ("bare_cr_in_value", req(headers=H + b"X: a\rb\r\n"), 400, CLOSE),
    ("bare_cr_before_blank_line", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\r\n", 400, CLOSE),
    # Host
    ("host_missing_http11", req(headers=b""), 400, CLOSE),
    ("host_twice", req(headers=H + b"Host: y\r\n"), 400, CLOSE),
    ("host_with_space", req(headers=b"Host: a b\r\n"), 400, CLOSE),
    ("host_missing_http10_ok", req(b"GET /a HTTP/1.0", b""), 200, CLOSE),
    # sizes
    ("header_line_too_large", req(headers=H + b"X: " + b"v" * 5000 + b"\r\n"), 431, CLOSE),
    ("head_too_large_many_lines", req(headers=H + b"".join(
        b"X-%03d: %s\r\n" % (i, b"v" * 90) for i in range(60))), 431, CLOSE),
    ("too_many_header_lines", req(headers=H + b"X: y\r\n" * 100), 431, CLOSE),
    ("huge_header_count", req(headers=H + b"X:\r\n" * 1000), 431, CLOSE),
    ("body_too_large", post(b"Content-Length: 1025\r\n", b"x" * 1025), 413, CLOSE),
    ("body_too_large_expect", post(b"Content-Length: 5000\r\nExpect: 100-continue\r\n", b""),
     413, CLOSE),
    # Content-Length
    ("cl_not_a_number", post(b"Content-Length: abc\r\n", b"abc"), 400, CLOSE),
    ("cl_plus_sign", post(b"Content-Length: +3\r\n", b"abc"), 400, CLOSE),
    ("cl_negative", post(b"Content-Length: -1\r\n", b""), 400, CLOSE),
    ("cl_overflow", post(b"Content-Length: 99999999999999999999999\r\n", b""), 400, CLOSE),
    ("cl_hex", post(b"Content-Length: 0x10\r\n", b""), 400, CLOSE),
    ("cl_empty", post(b"Content-Length: \r\n", b""), 400, CLOSE),
    # smuggling pairs
    ("smuggle_cl_te", post(b"Content-Length: 4\r\n" + TE, b"0\r\n\r\n" + req()), 400, CLOSE),
    ("smuggle_te_cl", post(TE + b"Content-Length: 4\r\n", b"0\r\n\r\n" + req()), 400, CLOSE),
    ("smuggle_cl_cl", post(b"Content-Length: 3\r\nContent-Length: 30\r\n", b"abc"), 400, CLOSE),
    ("smuggle_cl_list", post(b"Content-Length: 3, 30\r\n", b"abc"), 400, CLOSE),
    ("cl_same_twice_ok", post(b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"), 200, KEEP),
    ("smuggle_te_space_before_colon", post(b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
     400, CLOSE),
    ("smuggle_te_chunked_twice", post(b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
     400, CLOSE),
    ("smuggle_te_chunked_not_last", post(TE + b"Transfer-Encoding: gzip\r\n", b"0\r\n\r\n"),
     400, CLOSE),
    ("smuggle_te_xchunked", post(b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"), 501, CLOSE),
    ("smuggle_te_in_http10", req(b"POST /a HTTP/1.0", TE, b"0\r\n\r\n"), 400, CLOSE),
    ("smuggle_te_obs_fold", post(b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"), 400, CLOSE),
    # chunked framing
    ("chunk_size_not_hex", post(TE, b"zz\r\nhello\r\n0\r\n\r\n"), 400, CLOSE),
    ("chunk_size_negative", post(TE, b"-1\r\nx\r\n0\r\n\r\n"), 400, CLOSE),
    ("chunk_size_0x_prefix", post(TE, b"0x5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE),
    ("chunk_size_leading_space", post(TE, b" 5\r\nhello\r\n0\r\n\r\n"), 400, CLOSE),
    # A size beyond max_body_size is refused as soon as it is read.
    ("chunk_size_overflow", post(TE, b"FFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n"), 413, CLOSE),
    ("chunk_size_above_limit", post(TE, b"401\r\n"), 413, CLOSE),
    ("chunk_sum_above_limit", post(TE, b"200\r\n" + b"x" * 512 + b"\r\n" + b"300\r\n"), 413, CLOSE),
    ("chunk_data_no_crlf", post(TE, b"5\r\nhelloXX0\r\n\r\n"), 400, CLOSE),
    ("chunk_bare_lf", post(TE, b"5\nhello\n0\n\n"), 400, CLOSE),
    ("chunk_size_line_too_long", post(TE, b"5;" + b"e" * 5000 + b"\r\nhello\r\n0\r\n\r\n"),
     400, CLOSE),
    ("chunk_extension_control_char", post(TE, b"5;a\x01\r\nhello\r\n0\r\n\r\n"), 400, CLOSE),
    ("chunk_trailer_no_colon", post(TE, b"0\r\nbad trailer\r\n\r\n"), 400, CLOSE),
    ("chunk_trailer_too_large", post(TE, b"0\r\nX: " + b"t" * 9000 + b"\r\n\r\n"), 431, CLOSE),
    # other protocols and binary junk
    ("tls_client_hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, 400, CLOSE),
    ("http2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, CLOSE),
    ("all_nul", b"\x00" * 64, 400, CLOSE),
    ("high_bytes", bytes(range(128, 256)) + b"\r\n\r\n", 400, CLOSE),
]


def setup():
    global S, WORKER
    S = Spindle("""
[http main]
listen = 127.0.0.1:%d
return /a = 200 text/plain AAA
max_header_size = 4k
max_body_size = 1k
header_timeout = 1s
body_timeout = 1s
""" % PORT)
    S.start(ports=[PORT])
    WORKER = S.wait_workers(1)[0]


def make_case(name, raw, status, conn):
    def fn():
        got, head, closed, s = exchange(PORT, raw)
        try:
            if status is None:
                check(got is None and closed, "closed without a response, got %r" % head[:200])
            else:
                eq(got, status, "status (head %r)" % head[:120])
                if conn == CLOSE:
                    check(b"\r\nConnection: close" in head, "Connection: close in %r" % head)
                    check(closed, "connection closed after %d" % status)
                else:
                    check(not closed, "connection kept after %d" % status)
                    s.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
                    s.settimeout(3)
                    data = b""
                    while b"AAA" not in data:
                        chunk = s.recv(4096)
                        check(chunk, "next request answered, got %r" % data)
                        data += chunk
                    check(data.startswith(b"HTTP/1.1 200 "), "200 next: %r" % data[:80])
        finally:
            s.close()
        eq(S.workers(), [WORKER], "the worker is the same process")
    fn.__name__ = name
    return fn


setup()
for c in CASES:
    tap.case(make_case(*c))


@tap.case
def a_valid_request_still_works_after_all_cases():
    check(get_ok(PORT), "GET /a gets 200")
    eq(S.workers(), [WORKER], "same worker pid")
    check(wait_for(lambda: "died" not in S.logs(), 0.1), "no worker death in the log")


if __name__ == "__main__":
    tap.run()
