"""A small HTTP/1.1 upstream for the proxy tests, run in threads of the test
itself on 127.0.0.1: it answers each request with what a behaviour function
returns, counts its connections and requests, and records what it received,
so a test can see exactly what the proxy forwarded."""
import json
import socket
import threading


def read_request(f):
    """Reads one request from the file f: (request line, [(name, value)], body),
    or None at the end of the stream.  The body is decoded (Content-Length or
    chunked)."""
    line = f.readline()
    if not line:
        return None
    line = line.rstrip(b"\r\n").decode("latin-1")
    headers = []
    while True:
        h = f.readline()
        if not h:
            return None
        if h in (b"\r\n", b"\n"):
            break
        k, _, v = h.decode("latin-1").partition(":")
        headers.append((k.strip(), v.strip()))
    hd = {k.lower(): v for k, v in headers}
    body = b""
    if "chunked" in hd.get("transfer-encoding", ""):
        while True:
            size = int(f.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while f.readline() not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += f.read(size)
            f.readline()
    elif "content-length" in hd:
        body = f.read(int(hd["content-length"]))
    return line, headers, body


def echo(req, *_):
    """The default behaviour: a JSON body describing the request received."""
    line, headers, body = req
    doc = {"line": line, "headers": headers, "body": body.decode("latin-1")}
    b = json.dumps(doc).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % len(b)) + b


class Upstream:
    """behaviour(req, conn_index, req_index_on_conn, sock) returns the bytes to
    send, or None to close the connection without answering; it may also use
    the socket itself (stall, send in pieces) and return b""."""

    def __init__(self, behaviour=echo):
        self.behaviour = behaviour
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.conns = 0
        self.requests = []
        self.closed_by_peer = 0
        self.lock = threading.Lock()
        self.open = set()
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
                n = self.conns
                self.open.add(s)
            threading.Thread(target=self._serve, args=(s, n), daemon=True).start()

    def _serve(self, s, n):
        f = s.makefile("rb")
        k = 0
        try:
            while True:
                req = read_request(f)
                if req is None:
                    with self.lock:
                        self.closed_by_peer += 1
                    return
                with self.lock:
                    self.requests.append(req)
                k += 1
                out = self.behaviour(req, n, k, s)
                if out is None:
                    return
                if out:
                    s.sendall(out)
        except OSError:
            with self.lock:
                self.closed_by_peer += 1
        finally:
            with self.lock:
                self.open.discard(s)
            try:
                f.close()
                s.close()
            except OSError:
                pass

    def stop(self):
        """Stops listening and ends every open connection."""
        self.stopped = True
        try:
            # shutdown first: close alone leaves a thread blocked in accept()
            # accepting on the file it holds.
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.ls.close()
        except OSError:
            pass
        with self.lock:
            for s in list(self.open):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
