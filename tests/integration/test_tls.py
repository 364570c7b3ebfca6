"""HTTPS: listen addresses flagged tls, with certificates the test makes with
the openssl command.  Real clients (curl, openssl s_client, python's ssl),
hostile input that must close cleanly and harm no worker, configuration
errors that name file, line and reason."""
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

from harness import Spindle, Tap, check, eq, free_port, need, skip, wait_for

tap = Tap()

BODY = b"Hello, TLS!"


def openssl(*args, cwd):
    r = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, text=True)
    check(r.returncode == 0, "openssl %s: %s" % (" ".join(args), r.stderr))


def make_cert(d, name, cn="localhost", days="30", key_type="ec"):
    """name.pem (self-signed, for cn, 127.0.0.1 too) and name.key in d."""
    if key_type == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
    else:
        newkey = ["-newkey", "rsa:2048"]
    openssl("req", "-new", *newkey, "-nodes", "-keyout", name + ".key", "-out", name + ".csr",
            "-subj", "/CN=" + cn, cwd=d)
    ext = os.path.join(d, name + ".ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:%s,IP:127.0.0.1\n" % cn)
    openssl("x509", "-req", "-in", name + ".csr", "-signkey", name + ".key", "-days", days,
            "-extfile", ext, "-out", name + ".pem", cwd=d)
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def section(tls_port, plain_port=None, pairs=(("site.pem", "site.key"),), extra=""):
    text = "[http main]\nlisten = 127.0.0.1:%d tls\n" % tls_port
    if plain_port:
        text += "listen = 127.0.0.1:%d\n" % plain_port
    for cert, key in pairs:
        text += "tls_certificate = %s\ntls_certificate_key = %s\n" % (cert, key)
    text += "status = /status\nreturn /hello = 200 text/plain Hello, TLS!\n" + extra
    return text


def start(extra="", workers=1, threads=1, plain=True, **kw):
    port, plain_port = free_port(), free_port() if plain else None
    sp = Spindle("", workers=workers, threads=threads)
    make_cert(sp.dir, "site")
    os.mkdir(os.path.join(sp.dir, "www"))
    sp.write_conf(section(port, plain_port, extra=extra, **kw), workers=workers, threads=threads)
    sp.start(ports=[port])
    sp.wait_ready(workers)
    return sp, port, plain_port


def client_ctx(sp, cafile="site.pem"):
    ctx = ssl.create_default_context(cafile=os.path.join(sp.dir, cafile))
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def tls_connect(sp, port, cafile="site.pem", server_name="localhost"):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    return client_ctx(sp, cafile).wrap_socket(s, server_hostname=server_name)


_pending = {}  # bytes read past a response, per socket (pipelined answers)


def read_response(s, with_close=False):
    """One response on s: (status, body), plus whether the server ends the
    connection (Connection: close) when with_close."""
    buf = _pending.pop(id(s), b"")
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        check(chunk, "connection closed inside a head: %r" % buf)
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(rest) < n:
        chunk = s.recv(65536)
        check(chunk, "connection closed inside a body")
        rest += chunk
    if len(rest) > n:
        _pending[id(s)] = rest[n:]
    answer = (int(head.split(b" ")[1]), rest[:n])
    if with_close:
        return answer + (re.search(rb"(?i)\r\nconnection: *close", head) is not None,)
    return answer


def tls_get(sp, port, path="/hello"):
    with tls_connect(sp, port) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path.encode())
        return read_response(s)


def status(sp, port):
    st, body = tls_get(sp, port, "/status")
    eq(st, 200, "status page")
    return json.loads(body)


def assert_closed(s, timeout=5.0, what="connection"):
    """The server closes s without an HTTP answer (a TLS alert may come)."""
    s.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    except socket.timeout:
        raise AssertionError("%s not closed within %.1fs" % (what, timeout))
    check(b"HTTP/" not in got, "%s got an HTTP answer: %r" % (what, got[:80]))
    check(not got or got[0] == 0x15, "%s got something else than an alert: %r" % (what, got[:20]))


def curl_keepalive_and_files(extra=""):
    need(shutil.which("curl"), "curl not installed")
    sp, port, _ = start(extra="root = %s\n" % "www" + extra)
    try:
        www = os.path.join(sp.dir, "www")
        big = os.urandom(3 << 20)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.write(big)
        with open(os.path.join(www, "small.txt"), "wb") as f:
            f.write(b"small file\n")
        url = "https://localhost:%d" % port
        r = subprocess.run(["curl", "-sS", "--cacert", os.path.join(sp.dir, "site.pem"),
                            "--resolve", "localhost:%d:127.0.0.1" % port, "-w", "%{num_connects}\n",
                            url + "/hello", url + "/small.txt", url + "/big.bin", url + "/hello"],
                           capture_output=True, timeout=30)
        eq(r.returncode, 0, "curl exit code (%s)" % r.stderr)
        out = r.stdout
        check(out.startswith(BODY + b"1\n"), "first answer: %r" % out[:40])
        check(b"small file\n0\n" in out, "second answer on the same connection: %r" % out[:80])
        check(big + b"0\n" in out, "the 3 MB file over TLS, on the same connection")
        check(out.endswith(BODY + b"0\n"), "last answer: %r" % out[-40:])
        return status(sp, port)["tls"]
    finally:
        sp.stop()


def python_ssl_pipelined_and_idle_parked(extra=""):
    sp, port, plain = start(extra=extra)
    try:
        def page():
            return json.loads(subprocess.run(["curl", "-s", "http://127.0.0.1:%d/status" % plain],
                                             capture_output=True).stdout)
        base = page()
        with tls_connect(sp, port) as s:
            eq(s.selected_alpn_protocol(), "http/1.1", "ALPN")
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
            for _ in range(3):
                eq(read_response(s), (200, BODY), "pipelined answer")
            # The connection idles: its fd waits in a watch, no fiber held.
            def parked():
                st = page()
                return (st["idle_connections"] == base["idle_connections"] + 1 and
                        st["fibers_live"] == base["fibers_live"]) or None
            check(wait_for(parked, 5), "the idle TLS connection holds a fiber: %r" % page())
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            eq(read_response(s), (200, BODY), "answer after the idle stretch")
    finally:
        sp.stop()


@tap.case
def curl_keepalive_and_files_own_bio():
    curl_keepalive_and_files("tls_ktls = off\n")


@tap.case
def python_ssl_pipelined_and_idle_parked_own_bio():
    python_ssl_pipelined_and_idle_parked("tls_ktls = off\n")


# tls_ktls = on: OpenSSL's socket BIO, the kernel TLS path, whether or not
# this kernel then takes the records over (here, without its tls module,
# OpenSSL's setsockopt fails and the records stay in user space).
@tap.case
def curl_keepalive_and_files_socket_bio():
    curl_keepalive_and_files("tls_ktls = on\n")


@tap.case
def python_ssl_pipelined_and_idle_parked_socket_bio():
    python_ssl_pipelined_and_idle_parked("tls_ktls = on\n")


@tap.case
def s_client_tls12_and_tls13():
    sp, port, _ = start()
    try:
        for flag, proto in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            r = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, flag,
                                "-servername", "localhost", "-alpn", "http/1.1", "-ign_eof",
                                "-CAfile", os.path.join(sp.dir, "site.pem")],
                               input=b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                               capture_output=True, timeout=10)
            out = r.stdout.decode(errors="replace")
            check("Protocol  : %s" % proto in out or "Protocol: %s" % proto in out or
                  ", %s," % proto in out, "%s not negotiated:\n%s" % (proto, out[-1500:]))
            check("ALPN protocol: http/1.1" in out, "ALPN with %s" % proto)
            check("Verify return code: 0 (ok)" in out, "certificate verified with %s" % proto)
            check("Hello, TLS!" in out, "answer over %s" % proto)
    finally:
        sp.stop()


@tap.case
def tls_protocols_and_ciphers_applied():
    sp, port, _ = start(extra="tls_protocols = TLSv1.3\n")
    try:
        ctx = client_ctx(sp)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            ctx.wrap_socket(s, server_hostname="localhost")
            raise AssertionError("a TLS 1.2 handshake succeeded with tls_protocols = TLSv1.3")
        except ssl.SSLError:
            pass
        finally:
            s.close()
        with tls_connect(sp, port) as t:
            eq(t.version(), "TLSv1.3", "the version offered")
    finally:
        sp.stop()


def hostile_input(threads, extra=""):
    sp, port, plain = start(workers=2, threads=threads,
                            extra="tls_handshake_timeout = 1s\n" + extra)
    try:
        workers = sorted(sp.workers())
        before = status(sp, port)
        # Garbage instead of a ClientHello.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(os.urandom(64) + b"\r\n\r\n")
        assert_closed(s, what="garbage")
        s.close()
        # Plaintext HTTP to the TLS port: nothing useful back, closed.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert_closed(s, what="plaintext HTTP")
        s.close()
        # A truncated ClientHello, then the client goes away.
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        s.close()
        # A stalled handshake: closed after tls_handshake_timeout (1s).
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        assert_closed(s, timeout=8, what="stalled handshake")
        took = time.monotonic() - t0
        check(0.8 < took < 5.0, "stalled handshake closed after %.2fs, want ~1s" % took)
        s.close()
        # A client that connects and says nothing is closed the same way.
        t0 = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        assert_closed(s, timeout=8, what="silent client")
        check(time.monotonic() - t0 < 5.0, "silent client held too long")
        s.close()
        # Renegotiation (TLS 1.2): refused, the connection ends.
        r = subprocess.run("(echo R; sleep 2) | openssl s_client -connect 127.0.0.1:%d -tls1_2"
                           % port, shell=True, capture_output=True, timeout=15)
        out = (r.stdout + r.stderr).decode(errors="replace")
        check("RENEGOTIATING" in out, "s_client did not try: " + out[-800:])
        check("renegotiation" in out and "error" in out,
              "renegotiation not refused: " + out[-800:])
        eq(sorted(sp.workers()), workers, "workers after the hostile clients")
        eq(tls_get(sp, port), (200, BODY), "still serving")
        # Counted: failures in both workers' pages together are at least 4.
        def failures():
            total, seen = 0, set()
            for _ in range(40):
                st = status(sp, port)
                if st["pid"] not in seen:
                    seen.add(st["pid"])
                    total += st["tls"]["handshake_failures"]
                if len(seen) == 2:
                    return total
            return total
        check(failures() >= 4, "handshake failures not counted")
        check(before["tls"]["handshakes"] >= 1, "handshakes not counted")
    finally:
        sp.stop()


@tap.case
def hostile_input_closes_cleanly():
    hostile_input(threads=1)


@tap.case
def hostile_input_closes_cleanly_threads_2():
    hostile_input(threads=2)


@tap.case
def hostile_input_closes_cleanly_socket_bio():
    hostile_input(threads=1, extra="tls_ktls = on\n")


@tap.case
def threads_2_serve_tls():
    sp, port, _ = start(threads=2)
    try:
        import threading
        errors = []

        def client():
            try:
                for _ in range(20):
                    with tls_connect(sp, port) as s:
                        for _ in range(5):
                            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                            if read_response(s) != (200, BODY):
                                errors.append("bad answer")
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        ts = [threading.Thread(target=client) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        eq(errors, [], "errors with threads = 2")
    finally:
        sp.stop()


@tap.case
def sni_picks_the_certificate():
    sp = Spindle("")
    port = free_port()
    try:
        make_cert(sp.dir, "site")
        make_cert(sp.dir, "other", cn="other.test")
        sp.write_conf(section(port, pairs=(("site.pem", "site.key"),
                                           ("other.pem", "other.key"))))
        sp.start(ports=[port])
        with tls_connect(sp, port, "other.pem", "other.test") as s:
            eq(s.getpeercert()["subject"], ((("commonName", "other.test"),),), "SNI other.test")
        with tls_connect(sp, port, "site.pem", "localhost") as s:
            eq(s.getpeercert()["subject"], ((("commonName", "localhost"),),), "SNI localhost")
    finally:
        sp.stop()


@tap.case
def ecdsa_and_rsa_of_one_name():
    sp = Spindle("")
    port = free_port()
    try:
        make_cert(sp.dir, "site")
        make_cert(sp.dir, "rsa", key_type="rsa")
        sp.write_conf(section(port, pairs=(("site.pem", "site.key"), ("rsa.pem", "rsa.key"))))
        sp.start(ports=[port])
        got = {}
        for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(suite)
            with ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5),
                                 server_hostname="localhost") as t:
                got[suite] = t.getpeercert(binary_form=True)
        eq(got["ECDHE-ECDSA-AES128-GCM-SHA256"], der_of(os.path.join(sp.dir, "site.pem")),
           "the ECDSA certificate for an ECDSA suite")
        eq(got["ECDHE-RSA-AES128-GCM-SHA256"], der_of(os.path.join(sp.dir, "rsa.pem")),
           "the RSA certificate for an RSA suite")
    finally:
        sp.stop()


def check_conf(sp, text, want):
    sp.write_conf(text)
    r = subprocess.run([sp.bin, "-t", "-c", sp.conf], capture_output=True, text=True,
                       cwd=sp.dir)
    out = r.stdout + r.stderr
    check(r.returncode != 0, "accepted:\n" + text)
    check(re.search(want, out), "expected /%s/, got: %s" % (want, out))


@tap.case
def config_errors_name_file_line_and_reason():
    sp = Spindle("")
    d = sp.dir
    make_cert(d, "site")
    make_cert(d, "other")
    make_cert(d, "old", days="-1")
    port = free_port()
    conf = re.escape(sp.conf)
    check_conf(sp, section(port, pairs=(("site.pem", "missing.key"),)),
               conf + r":\d+: tls_certificate_key .*missing.key: cannot read: No such file")
    check_conf(sp, section(port, pairs=(("site.pem", "other.key"),)),
               conf + r":\d+: tls_certificate_key .*other.key does not match tls_certificate "
               r".*site.pem")
    check_conf(sp, section(port, pairs=(("old.pem", "old.key"),)),
               conf + r":\d+: tls_certificate .*old.pem: the certificate has expired")
    check_conf(sp, section(port, pairs=(("site.key", "site.key"),)),
               r"tls_certificate .*site.key: no certificate")
    check_conf(sp, section(port, pairs=()), r"no tls_certificate")
    check_conf(sp, section(port, pairs=(("site.pem", "site.key"),), extra="tls_protocols = SSLv3\n"),
               conf + r":\d+: invalid tls_protocols 'SSLv3'")
    check_conf(sp, section(port, extra="tls_ciphers = NOTHING-AT-ALL\n"),
               r"invalid tls_ciphers 'NOTHING-AT-ALL'")
    check_conf(sp, section(port, extra="tls_session_tickets = maybe\n"),
               r"invalid tls_session_tickets 'maybe'")
    check_conf(sp, section(port, extra="tls_ktls = always\n"),
               conf + r":\d+: invalid tls_ktls 'always': expected auto, on or off")
    check_conf(sp, "[http main]\nlisten = 127.0.0.1:%d tsl\n" % port,
               conf + r":\d+: invalid listen .*unknown flag 'tsl'")
    check_conf(sp, "[echo main]\nlisten = 127.0.0.1:%d tls\n" % port,
               r"does not speak TLS")
    sp.write_conf(section(port))
    r = subprocess.run([sp.bin, "-t", "-c", sp.conf], capture_output=True, text=True, cwd=d)
    eq(r.returncode, 0, "a good configuration: " + r.stdout + r.stderr)


def peer_der(sp, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with ctx.wrap_socket(s, server_hostname="localhost") as t:
        return t.getpeercert(binary_form=True)


def der_of(path):
    return ssl.PEM_cert_to_DER_cert(open(path).read())


@tap.case
def certificate_rotation_by_reload_under_load():
    import threading
    sp, port, _ = start(workers=2)
    d = sp.dir
    stop = threading.Event()
    counts = {"ok": 0, "failed": 0}
    errors = []
    lock = threading.Lock()

    def client():
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        while not stop.is_set():
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                with ctx.wrap_socket(s, server_hostname="localhost") as t:
                    for _ in range(3):
                        t.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                        st, body, close = read_response(t, with_close=True)
                        with lock:
                            counts["ok" if (st, body) == (200, BODY) else "failed"] += 1
                        if close:  # a draining worker's last answer
                            break
            except Exception as e:  # noqa: BLE001
                with lock:
                    counts["failed"] += 1
                    errors.append(repr(e))
    ts = [threading.Thread(target=client) for _ in range(6)]
    try:
        for t in ts:
            t.start()
        check(wait_for(lambda: counts["ok"] > 50, 10), "load never got going: %r" % counts)
        first = der_of(os.path.join(d, "site.pem"))
        for i in range(3):
            # certbot's way: new files in place, then a reload.
            make_cert(d, "site")
            rc, out = sp.ctl("reload")
            eq(rc, 0, "reload %d: %s\n%s" % (i, out, sp.logs()))
            want = der_of(os.path.join(d, "site.pem"))
            check(want != first, "a new certificate was made")
            check(wait_for(lambda: peer_der(sp, port) == want, 5),
                  "new connections still get the old certificate after reload %d" % i)
            time.sleep(0.3)
        # A bad key: the reload fails with the reason, the certificate stays.
        make_cert(d, "other")
        good = der_of(os.path.join(d, "site.pem"))
        for bad, why in ((section(port, pairs=(("site.pem", "other.key"),)), "does not match"),
                         (section(port, pairs=(("site.pem", "gone.key"),)), "cannot read")):
            sp.write_conf(bad, workers=2)
            rc, out = sp.ctl("reload")
            check(rc != 0, "a bad key reloaded: " + out)
            check(why in out, "the reason in the answer: " + out)
            eq(peer_der(sp, port), good, "the old certificate keeps serving")
        make_cert(d, "old", days="-1")
        sp.write_conf(section(port, pairs=(("old.pem", "old.key"),)), workers=2)
        rc, out = sp.ctl("reload")
        check(rc != 0 and "expired" in out, "an expired certificate reloaded: " + out)
        eq(peer_der(sp, port), good, "the old certificate keeps serving")
        n = counts["ok"]
        check(wait_for(lambda: counts["ok"] > n + 50, 10), "load stalled: %r" % counts)
        stop.set()
        for t in ts:
            t.join()
        eq(counts["failed"], 0, "failed requests (%r): %r" % (counts, errors[:5]))
        print("# %d requests over TLS through 3 rotations and 3 failed reloads" % counts["ok"],
              flush=True)
    finally:
        stop.set()
        for t in ts:
            if t.is_alive():
                t.join()
        sp.stop()


def s_client_resume(port, sess_file, sess_in):
    """One s_client run that saves (or reuses) a session and asks /status.
    Returns (reused, worker pid)."""
    args = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-tls1_3", "-ign_eof"]
    args += ["-sess_in", sess_file] if sess_in else ["-sess_out", sess_file]
    r = subprocess.run(args, input=b"GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                       capture_output=True, timeout=10)
    out = r.stdout.decode(errors="replace")
    m = re.search(r'"pid":(\d+)', out)
    check(m, "no status answer: " + out[-1000:])
    return "Reused," in out, int(m.group(1))


@tap.case
def session_resumes_on_another_worker_and_after_reload():
    sp, port, _ = start(workers=2)
    try:
        sess = os.path.join(sp.dir, "session.pem")
        reused, first = s_client_resume(port, sess, False)
        check(not reused, "a first connection resumed")
        others = set()
        for _ in range(40):
            reused, pid = s_client_resume(port, sess, True)
            check(reused, "the session was not resumed (worker %d)" % pid)
            if pid != first:
                others.add(pid)
                break
        check(others, "every connection landed on worker %d" % first)
        # A worker forked later (a crash respawned) got the keys too.
        os.kill(first, signal.SIGKILL)
        # One look at the workers: two looks could see the killed one not yet
        # reaped, then gone, and no replacement yet.
        respawned = (set(sp.wait_workers(2, timeout=10, exclude=[first])) - others).pop()
        for _ in range(40):
            reused, pid = s_client_resume(port, sess, True)
            check(reused, "the session was not resumed (worker %d)" % pid)
            if pid == respawned:
                break
        eq(pid, respawned, "no connection landed on the respawned worker")
        before = set(sp.workers())
        rc, out = sp.ctl("reload")
        eq(rc, 0, "reload: " + out)
        wait_for(lambda: not before & set(sp.workers()), 10)
        reused, pid = s_client_resume(port, sess, True)
        check(pid not in before and reused, "not resumed after the reload (worker %d)" % pid)
    finally:
        sp.stop()


@tap.case
def session_resumes_after_a_binary_upgrade():
    """USR2 hands the ticket keys to the new master (a memfd), whose
    workers open the tickets the old ones sealed."""
    sp, port, _ = start(workers=2)
    try:
        sess = os.path.join(sp.dir, "session.pem")
        reused, _ = s_client_resume(port, sess, False)
        old = set(sp.workers())
        sp.signal(signal.SIGUSR2)
        check(sp.wait_log(r"binary upgrade: the new master \(pid \d+\) is ready", 1, 10),
              "the new master never became ready:\n" + sp.logs())
        os.kill(sp.pid, signal.SIGQUIT)
        check(sp.wait_exit(10) is not None, "the old master did not exit on QUIT")
        reused, pid = s_client_resume(port, sess, True)
        check(pid not in old, "served by an old worker %d" % pid)
        check(reused, "not resumed after the binary upgrade (worker %d)" % pid)
        check("SPINDLE_TICKET_KEYS" not in open("/proc/%d/environ" % pid, "rb").read().decode(
            errors="replace"), "the worker sees SPINDLE_TICKET_KEYS")
    finally:
        sp.stop()


@tap.case
def session_ticket_keys_rotate():
    """tls_session_ticket_rotation = 3s: a ticket of one period resumes in
    the next (the previous key still opens it), not in the one after."""
    sp, port, _ = start(workers=2, extra="tls_session_ticket_rotation = 3s\n")
    try:
        sess = os.path.join(sp.dir, "session.pem")
        wait_for(lambda: 0.2 <= time.time() % 3 <= 0.6, 5, step=0.01)
        s_client_resume(port, sess, False)
        time.sleep(3.0)
        reused, _ = s_client_resume(port, sess, True)
        check(reused, "a ticket of the previous period was refused")
        time.sleep(3.0)
        reused, _ = s_client_resume(port, sess, True)
        check(not reused, "a ticket two periods old was accepted")
    finally:
        sp.stop()


@tap.case
def session_tickets_off():
    sp, port, _ = start(extra="tls_session_tickets = off\n")
    try:
        sess = os.path.join(sp.dir, "session.pem")
        s_client_resume(port, sess, False)
        if os.path.exists(sess):
            reused, _ = s_client_resume(port, sess, True)
            check(not reused, "resumed with tls_session_tickets = off")
    finally:
        sp.stop()


@tap.case
def ktls_when_the_kernel_offers_it():
    # A kernel property, not a package CI could install: skip() even there.
    if not os.path.exists("/sys/module/tls"):
        skip("no kernel TLS here (the tls module is not loaded): records are encrypted in "
             "user space")
    # tls_ktls = auto: the kernel encrypts, and the 3 MB file goes out with sendfile.
    tls = curl_keepalive_and_files()
    check(tls["ktls_handshakes"] >= 1, "no connection used kernel TLS: %r" % tls)


@tap.case
def proxy_over_tls_says_https_to_the_upstream():
    """A proxy line behind a tls listen: the upstream gets X-Forwarded-Proto
    https (http on the plain address of the same section)."""
    from upstream import Upstream
    up = Upstream()
    sp = None
    try:
        port, plain = free_port(), free_port()
        sp = Spindle("")
        make_cert(sp.dir, "site")
        sp.write_conf("[upstream app]\nserver = 127.0.0.1:%d\n\n" % up.port +
                      section(port, plain, extra="proxy /api = app\n"))
        sp.start(ports=[port, plain])
        sp.wait_ready(1)
        for p, tls, want in ((port, True, "https"), (plain, False, "http")):
            s = tls_connect(sp, p) if tls else socket.create_connection(("127.0.0.1", p),
                                                                         timeout=5)
            with s:
                s.sendall(b"GET /api/x HTTP/1.1\r\nHost: h\r\n\r\n")
                status_code, body = read_response(s)
            eq(status_code, 200, "proxied over %s" % want)
            headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
            eq(headers.get("x-forwarded-proto"), want, "X-Forwarded-Proto")
    finally:
        if sp:
            sp.stop()
        up.stop()


tap.run()
