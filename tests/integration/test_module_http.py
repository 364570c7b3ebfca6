#!/usr/bin/env python3
"""HTTP handlers in modules, end to end through the real binary: the hello
example answers JSON under its prefix (segments only), beside a built-in
return route; then a module is swapped by a reload under 64 keep-alive
clients with no failed request (connections opened after `spindle -s reload`
returned get the new version), and reloads to versions whose init fails,
crashes or hangs, or that were built for another SP_API_VERSION, each exit 1
with the reason while the running version keeps serving, again with no
failed request.

The modules are built by make check: examples/hello/hello.so and the
variants of tests/modules/echo_upper.c (which also answer HTTP with
"GREETING vN")."""
import json
import os
import shutil
import socket
import struct
import time

from harness import BIN, Spindle, Tap, check, connect, eq, free_port, http_get as get, \
    recv_response
from loadgen import HttpLoad

tap = Tap()
MODULES = os.environ.get("SPINDLE_MODULES") or os.path.abspath("tests/modules")
HELLO = os.path.join(os.path.dirname(BIN), "examples", "hello", "hello.so")
PORT = free_port()
S = None
V1, V2 = b"Howdy v1\n", b"Howdy v2\n"


def conf():
    return ("[http web]\nlisten = 127.0.0.1:%d\n"
            "return /plaintext = 200 text/plain Hello, World!\n"
            "handle /hello = hello\nhandle /v = upper\n\n"
            "[module hello]\npath = %s\ngreeting = Hi\n\n"
            "[module upper]\npath = upper.so\ngreeting = Howdy\n" % (PORT, HELLO))


def install(name):
    """Puts tests/modules/NAME.so in place of upper.so as a package manager
    does: a copy beside it, then rename() over it."""
    tmp = os.path.join(S.dir, ".upper.so.tmp")
    shutil.copyfile(os.path.join(MODULES, name + ".so"), tmp)
    os.rename(tmp, os.path.join(S.dir, "upper.so"))


def setup():
    global S
    S = Spindle(conf(), workers=2)
    install("echo_upper_v1")
    S.start(ports=[PORT])
    S.wait_ready(2)


@tap.case
def the_hello_example_answers_json_under_its_prefix():
    status, headers, body = get(PORT, "/hello?name=world&lang=en")
    eq(status, 200, "status of /hello?name=world&lang=en")
    doc = json.loads(body)
    eq(doc["greeting"], "Hi", "greeting from [module hello]")
    eq(doc["query"], {"name": "world", "lang": "en"}, "query")
    status, _, body = get(PORT, "/hello/deeper/path")
    eq(status, 200, "a path below the prefix")
    eq(json.loads(body)["path"], "/hello/deeper/path", "path seen by the handler")
    eq(get(PORT, "/helloworld")[0], 404, "/helloworld is not under /hello")
    eq(get(PORT, "/plaintext")[2], b"Hello, World!", "the built-in return route beside it")
    eq(get(PORT, "/v")[2], V1, "the test module's route")


@tap.case
def hostile_clients_on_a_module_route():
    """A module's route gets the connection handling of built-in routes: a
    request trickled a byte at a time is answered; a body shorter than its
    Content-Length followed by a half-close, and a reset in the middle of a
    head, end those connections without hurting the worker."""
    workers = S.workers()
    with connect(PORT) as s:
        for b in b"GET /v HTTP/1.1\r\nHost: x\r\n\r\n":
            s.sendall(bytes([b]))
            time.sleep(0.002)
        status, _, body = recv_response(s)
        eq((status, body), (200, V1), "the trickled request")
    with connect(PORT) as s:
        s.sendall(b"POST /v HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly this")
        s.shutdown(socket.SHUT_WR)
        s.settimeout(3.0)
        got = b""
        while True:  # the server must end the connection, not wait for 991 bytes
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        check(not got or got.startswith(b"HTTP/1.1 200 ") or got.startswith(b"HTTP/1.1 400 "),
              "the short body's answer: %r" % got[:80])
    s = socket.create_connection(("127.0.0.1", PORT))
    s.sendall(b"GET /v HTTP/1.1\r\nHo")
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST
    eq(get(PORT, "/v")[2], V1, "a fresh request afterwards")
    eq(S.workers(), workers, "the same workers (none crashed)")


@tap.case
def a_reload_swaps_the_module_under_load_with_no_failed_request():
    load = HttpLoad(PORT, conns=64, path="/v", body=(V1, V2)).start()
    try:
        check(load.wait_requests(300), "load never got going: " + load.summary())
        install("echo_upper_v2")
        rc, out = S.ctl("reload", timeout=30)
        eq(rc, 0, "reload exit code (%s)" % out)
        # Every connection opened after the reload returned gets v2.
        for i in range(20):
            eq(get(PORT, "/v")[2], V2, "fresh connection %d after the reload" % i)
        check(load.wait_requests(300), "load after the reload: " + load.summary())
    finally:
        load.stop()
    print("# hot swap: %s" % load.summary(), flush=True)
    eq(load.failed, 0, "failed requests (%s)" % load.summary())


def refused(name, reason):
    """A reload to module NAME fails with reason; v2 keeps serving every
    request of 64 keep-alive clients throughout."""
    load = HttpLoad(PORT, conns=64, path="/v", body=V2).start()
    try:
        check(load.wait_requests(200), "load never got going: " + load.summary())
        install(name)
        rc, out = S.ctl("reload", timeout=30)
        eq(rc, 1, "reload to %s: exit code (%s)" % (name, out))
        check(reason in out, "reload to %s: %r not in %r" % (name, reason, out))
        check(load.wait_requests(200), "load after the refused reload: " + load.summary())
        eq(get(PORT, "/v")[2], V2, "a fresh connection after the refused reload")
    finally:
        load.stop()
        install("echo_upper_v2")
    print("# %s: %s" % (name, load.summary()), flush=True)
    eq(load.failed, 0, "failed requests during the reload to %s (%s)" % (name, load.summary()))


@tap.case
def a_module_whose_init_fails_is_a_failed_reload():
    refused("init_fail", "upper")


@tap.case
def a_module_that_crashes_in_init_is_a_failed_reload():
    refused("init_segv", "SIGSEGV")


@tap.case
def a_module_that_never_returns_from_init_is_a_failed_reload():
    refused("init_hang", "did not return")


@tap.case
def a_module_built_for_another_api_version_is_a_failed_reload():
    refused("bad_api", "API version")


@tap.case
def the_running_version_still_serves_after_every_refusal():
    eq(get(PORT, "/v")[2], V2, "after the refused reloads")
    eq(len(S.workers()), 2, "workers")


setup()
tap.run()
