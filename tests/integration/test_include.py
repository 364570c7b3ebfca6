"""Configuration split into files (include = GLOB) and the default
configuration path chosen when the build is configured: -t, the start, a
reload that brings in a new file, a reload refused by a bad included file
(old workers kept, the message naming the file, its line and the include
line), and -h naming the path spindle reads without -c."""
import os
import re
import subprocess

from harness import BIN, Spindle, Tap, check, eq, free_port, http_get

tap = Tap()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


def site(port, body):
    return ("[http s%d]\nlisten = 127.0.0.1:%d\nreturn /plaintext = 200 text/plain %s\n"
            % (port, port, body))


@tap.case
def include_start_reload_and_bad_include():
    p1, p2 = free_port(), free_port()
    sp = Spindle("include = conf.d/*.conf\n")
    confd = os.path.join(sp.dir, "conf.d")
    write(os.path.join(confd, "a.conf"), site(p1, "from a"))
    r = subprocess.run([BIN, "-t", "-c", sp.conf], capture_output=True, text=True)
    eq(r.returncode, 0, "-t: " + r.stderr)
    sp.start([p1])
    sp.wait_ready(1)
    check(b"from a" in http_get(p1, "/plaintext")[2], "served from conf.d/a.conf")

    # A new file: a reload picks it up.
    write(os.path.join(confd, "b.conf"), site(p2, "from b"))
    rc, out = sp.ctl("reload")
    eq(rc, 0, "reload with a new included file: " + out)
    check(b"from b" in http_get(p2, "/plaintext")[2], "served from conf.d/b.conf")
    old = sp.wait_ready(1)

    # A bad included file: -t and reload name it, its line and the include.
    write(os.path.join(confd, "b.conf"), site(p2, "from b") + "bogus = 1\n")
    want = ("%s:4: unknown key 'bogus' in [http s%d] (included from %s:9)"
            % (os.path.join(confd, "b.conf"), p2, sp.conf))
    r = subprocess.run([BIN, "-t", "-c", sp.conf], capture_output=True, text=True)
    eq(r.returncode, 1, "-t of a bad include")
    eq(r.stderr.strip(), want, "-t's message")
    rc, out = sp.ctl("reload")
    eq(rc, 1, "reload of a bad include")
    check(want in out, "reload names the file and the include line: %r" % out)
    eq(sp.wait_ready(1), old, "the old worker keeps serving")
    check(b"from b" in http_get(p2, "/plaintext")[2], "still served")
    sp.stop()


@tap.case
def default_config_path_is_the_configured_one():
    r = subprocess.run([BIN, "-h"], capture_output=True, text=True)
    m = re.search(r"-c FILE\s+configuration file \(default: (\S+)\)", r.stdout)
    check(m, "-h names the default configuration file: %r" % r.stdout)
    path = m.group(1)
    check(path.endswith("/spindle/spindle.conf"), "SYSCONFDIR/spindle/spindle.conf: " + path)
    # Without -c, -t reads that file (missing here, unless installed).
    r = subprocess.run([BIN, "-t"], capture_output=True, text=True, cwd="/")
    if os.path.exists(path):
        return
    eq(r.returncode, 1, "-t without -c and no file")
    check(path in r.stderr, "names %s: %r" % (path, r.stderr))


tap.run()
