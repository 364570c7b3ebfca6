#!/usr/bin/env python3
"""WebSocket through the reverse proxy: the Upgrade is forwarded, the 101
passed back, and the connection then tunnelled both ways (echo, a 2 MB
message each way, messages the server pushes) until a side closes; an idle
tunnel is closed after the upstream's read_timeout.  The ends are Debian's
python3-websockets, run by /usr/bin/python3 (ws_peer.py)."""
import os
import socket
import subprocess
import time

from harness import Daemon, Spindle, Tap, check, eq, free_port, need, wait_port
from httpclient import Conn, build

tap = Tap()
PY = "/usr/bin/python3"
PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_peer.py")


def have_websockets():
    return os.path.exists(PY) and subprocess.run(
        [PY, "-c", "import websockets"], capture_output=True).returncode == 0


def setup(extra=""):
    wport, port = free_port(), free_port()
    server = Daemon("ws").spawn([PY, PEER, "server", str(wport)])
    check(wait_port(wport, timeout=10), "websocket server did not start")
    s = Spindle("""
[upstream ws]
server = 127.0.0.1:%d
%s
[http main]
listen = 127.0.0.1:%d
proxy /ws = ws
""" % (wport, extra, port))
    s.start(ports=[port])
    return server, s, port


@tap.case
def websocket_echo_big_and_pushed_messages():
    need(have_websockets(), "python3-websockets is not installed for %s" % PY)
    server, s, port = setup()
    try:
        r = subprocess.run([PY, PEER, "client", "ws://127.0.0.1:%d/ws/chat" % port],
                           capture_output=True, text=True, timeout=60)
        eq((r.returncode, r.stdout.strip()), (0, "ok"), "client (%s)" % r.stderr[-2000:])
        # The proxy still serves plain requests after the tunnel.
        with Conn(port) as c:
            c.send(build("GET", "/ws/plain"))
            st, _, _, _ = c.read_head()
            eq(st, 426, "a plain GET to a websocket server")
    finally:
        s.stop()
        server.stop()


@tap.case
def idle_tunnel_closed_after_read_timeout():
    need(have_websockets(), "python3-websockets is not installed for %s" % PY)
    server, s, port = setup("read_timeout = 500ms\n")
    try:
        with Conn(port) as c:
            c.send(build("GET", "/ws/idle", {
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}))
            st, _, h, _ = c.read_head()
            eq((st, h.get("upgrade", "").lower(), h.get("connection", "").lower()),
               (101, "websocket", "upgrade"), "switching protocols")
            eq(h.get("sec-websocket-accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", "accept key")
            t0 = time.monotonic()
            c.sock.settimeout(5)
            try:
                data = c.sock.recv(100)
            except ConnectionResetError:
                data = b""
            took = time.monotonic() - t0
            eq(data, b"", "closed")
            check(0.3 < took < 3, "closed after %.2f s" % took)
    finally:
        s.stop()
        server.stop()


if __name__ == "__main__":
    tap.run()
