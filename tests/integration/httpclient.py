"""HTTP/1.x client helpers for the integration tests: a buffered connection
that reads pipelined responses one by one, raw request builders, a way to
tell whether the server closed the connection, and many clients at once.

Nothing here is clever on purpose: the tests must see exactly the bytes the
server sends.
"""
import os
import socket
import threading

from harness import connect, wait_for  # noqa: F401 - wait_for is re-exported


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case names; the last value wins
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return "<Response %d %r %d bytes>" % (self.status, self.headers, len(self.body))


class Conn:
    """A client connection with its own read buffer, so that several
    responses arriving in one segment are each read whole."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, nodelay=True):
        self.sock = connect(port, host, timeout)
        if nodelay:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("connection closed by server (buffered %r)" % self.buf[:200])
        self.buf += chunk

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise AssertionError("bad status line %r" % lines[0])
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        return int(parts[1]), (parts[2] if len(parts) > 2 else ""), headers, head

    def response(self, head_only=False):
        """Reads one response; head_only for a HEAD request.  1xx responses
        are returned like any other (the caller reads the final one next)."""
        status, reason, headers, raw = self.read_head()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return Response(status, reason, headers, b"", raw)
        if "content-length" not in headers:
            raise AssertionError("response without Content-Length: %r" % raw)
        body = self.read_exact(int(headers["content-length"]))
        return Response(status, reason, headers, body, raw)

    def request(self, method="GET", path="/", headers=None, body=b"", version="1.1",
                head_only=None):
        self.send(build(method, path, headers, body, version))
        return self.response(head_only=(method == "HEAD") if head_only is None else head_only)

    def closed(self, timeout=2.0):
        """True when the server closes the connection (EOF or reset) within
        timeout with no further bytes; raises if bytes arrive instead."""
        if self.buf:
            raise AssertionError("unexpected buffered bytes %r" % self.buf[:200])
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if data:
            raise AssertionError("unexpected bytes %r" % data[:200])
        return True


def build(method="GET", path="/", headers=None, body=b"", version="1.1"):
    """A request as bytes.  Host is added for HTTP/1.1 unless headers name it
    (set it to None to leave it out); Content-Length when there is a body and
    no Transfer-Encoding or Content-Length is given."""
    if isinstance(body, str):
        body = body.encode("latin-1")
    h = []
    given = {k.lower() for k in (headers or {})}
    if version == "1.1" and "host" not in given:
        h.append(("Host", "localhost"))
    for k, v in (headers or {}).items():
        if v is not None:
            h.append((k, v))
    if body and "content-length" not in given and "transfer-encoding" not in given:
        h.append(("Content-Length", str(len(body))))
    text = "%s %s HTTP/%s\r\n" % (method, path, version)
    text += "".join("%s: %s\r\n" % kv for kv in h) + "\r\n"
    return text.encode("latin-1") + body


def chunked(data, sizes=(3, 5, 1000)):
    """data encoded as a chunked body, in chunks of the given sizes (cycled)."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    out, i, k = b"", 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out += b"%x\r\n" % len(data[i:i + n]) + data[i:i + n] + b"\r\n"
        i += n
        k += 1
    return out + b"0\r\n\r\n"


def read_all(sock, timeout=5.0):
    """Everything until the peer closes."""
    sock.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out


def run_clients(n, client, timeout=30):
    """Runs client(i, errors) for i in range(n), each in a thread of its own,
    all at once, and waits for them (each at most timeout seconds).  A client
    appends what went wrong to errors; an exception it raises is appended as
    (i, exception).  Returns errors."""
    errors = []

    def run(i):
        try:
            client(i, errors)
        except Exception as e:  # noqa: BLE001 - any failure is reported
            errors.append((i, e))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    return errors


def write_file(path, data):
    if isinstance(data, str):
        data = data.encode()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
