#!/usr/bin/env python3
"""make install and make uninstall, as a user or a package build runs them:
`make install DESTDIR=...` in the build tree puts the server in sbin/, the SDK
(libspindle.a, every public header, spindle.pc), the man pages and the
examples under the configured prefix; a program built out of tree with
nothing but `pkg-config --cflags --libs spindle` compiles, links and runs
against that install; the example modules (examples/hello, examples/upper)
build out of tree with their own Makefiles and the installed server loads
and serves them; the man pages render without a warning; the systemd
unit loads; `make uninstall` leaves no file behind."""
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import SRCDIR, Spindle, Tap, check, connect, eq, free_port, skip

tap = Tap()
BUILDDIR = os.path.dirname(os.path.abspath(os.environ.get("SPINDLE_BIN", "spindle")))
CC = os.environ.get("SPINDLE_CC") or "cc"
# TOP holds the staged install (DESTDIR) and, beside it, the test's own files.
TOP = tempfile.mkdtemp(prefix="spindle-test-install-")
DESTDIR = os.path.join(TOP, "root")


def make_env():
    """The environment for a make of our own: without the settings of the
    `make check` that runs this test (its jobserver, TESTS=...)."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR"):
        env.pop(k, None)
    return env


def make(*args, timeout=120):
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", BUILDDIR] + list(args),
                          capture_output=True, text=True, env=make_env(), timeout=timeout)


def variable(name):
    """A variable of the build tree's Makefile, expanded (sbindir, SP_RUNDIR, ...)."""
    r = make("--eval=print-var-%: ; @echo $($*)", "print-var-" + name)
    eq(r.returncode, 0, "make print-var-%s: %s" % (name, r.stderr))
    return r.stdout.strip()


DIRS = {name: variable(name) for name in
        ("prefix", "sbindir", "libdir", "includedir", "mandir", "docdir", "sysconfdir",
         "SP_RUNDIR", "PACKAGE_VERSION")}


def staged(name):
    """Where the configured directory DIRS[name] lies under DESTDIR."""
    return DESTDIR + DIRS[name]


def installed_files():
    out = []
    for dirpath, _, files in os.walk(DESTDIR):
        out += [os.path.relpath(os.path.join(dirpath, f), DESTDIR) for f in files]
    return sorted(out)


def pkg_config(*args):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = os.path.join(staged("libdir"), "pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = DESTDIR
    return subprocess.run(["pkg-config"] + list(args), capture_output=True, text=True, env=env,
                          timeout=30)


def sdk_flags():
    r = pkg_config("--cflags", "--libs", "spindle")
    eq(r.returncode, 0, "pkg-config --cflags --libs spindle: " + r.stderr)
    return r.stdout.split()


def need(tool, package):
    if shutil.which(tool) is None:
        skip("%s missing (Debian package %s; tests/deps.sh installs it)" % (tool, package))


@tap.case
def make_install_puts_everything_under_destdir():
    r = make("install", "DESTDIR=" + DESTDIR)
    eq(r.returncode, 0, "make install DESTDIR=%s: %s" % (DESTDIR, r.stderr[-2000:]))
    files = installed_files()
    check(files, "nothing installed")
    outside = [f for f in files if not ("/" + f).startswith(DIRS["prefix"] + "/")]
    eq(outside, [], "files installed outside the prefix " + DIRS["prefix"])
    for path in (os.path.join(staged("sbindir"), "spindle"),
                 os.path.join(staged("libdir"), "libspindle.a"),
                 os.path.join(staged("libdir"), "pkgconfig", "spindle.pc"),
                 os.path.join(staged("mandir"), "man8", "spindle.8"),
                 os.path.join(staged("mandir"), "man5", "spindle.conf.5"),
                 os.path.join(staged("docdir"), "examples", "spindle.service"),
                 os.path.join(staged("docdir"), "examples", "spindle.socket"),
                 os.path.join(staged("docdir"), "examples", "spindle.logrotate"),
                 os.path.join(staged("docdir"), "examples", "spindle.conf.example")):
        check(os.path.isfile(path), "not installed: " + path)
    # Every public header of every library and of the module API, flat in
    # include/spindle/, and no other file.
    want = sorted(os.path.basename(h)
                  for h in glob.glob(os.path.join(SRCDIR, "shared", "*", "include", "spindle",
                                                  "*.h")) +
                  glob.glob(os.path.join(SRCDIR, "worker", "include", "spindle", "*.h")))
    check(len(want) >= 10, "public headers in the source tree: %r" % want)
    eq(sorted(os.listdir(os.path.join(staged("includedir"), "spindle"))), want,
       "headers in include/spindle/ (shared/local.mk lists them)")


@tap.case
def installed_binary_runs():
    binary = os.path.join(staged("sbindir"), "spindle")
    r = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
    eq((r.returncode, r.stdout), (0, "spindle %s\n" % DIRS["PACKAGE_VERSION"]), "spindle -v")
    r = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=10)
    eq(r.returncode, 0, "spindle -h")
    check("default pid file: %s/spindle/NAME.pid" % DIRS["SP_RUNDIR"] in r.stdout,
          "spindle -h names the configured run directory: " + r.stdout)


@tap.case
def every_installed_header_compiles_alone():
    flags = sdk_flags()
    inc = os.path.join(staged("includedir"), "spindle")
    bad = []
    for name in sorted(os.listdir(inc)):
        # Twice: the include guard must hold.
        src = "#include <spindle/%s>\n#include <spindle/%s>\n" % (name, name)
        r = subprocess.run([CC, "-std=c11", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                            "-x", "c", "-"] + flags, input=src, capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            bad.append("%s: %s" % (name, r.stderr.strip()[-600:]))
    eq(bad, [], "headers that do not compile on their own with the pkg-config flags")


PROGRAM = r"""
/* Built out of tree against the installed SDK alone. */
#include <stdio.h>
#include <string.h>

#include <stddef.h>

#include <spindle/config.h>
#include <spindle/fiber.h>
#include <spindle/http_parser.h>
#include <spindle/service.h>

/* A service of the program's own: the loader knows only registered ones. */
struct greet_conf {
    const char *greeting;
};
static const struct sp_conf_key greet_keys[] = {
    {"greeting", sp_conf_set_string, offsetof(struct greet_conf, greeting), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
static const struct sp_service_def greet = {
    .name = "greet", .conf_size = sizeof(struct greet_conf), .keys = greet_keys,
};

static void count(void *arg)
{
    int *n = arg;
    for (int i = 0; i < 3; i++) {
        ++*n;
        sp_fiber_yield();
    }
}

int main(void)
{
    static const char req[] = "GET /hello?x=1 HTTP/1.1\r\nHost: example.org\r\n\r\n";
    struct sp_http_header headers[8];
    struct sp_http_request r;
    ssize_t n = sp_http_parse_request(req, strlen(req), NULL, &r, headers, 8);
    if (n != (ssize_t)strlen(req) || r.method != SP_HTTP_GET)
        return 1;
    printf("%s %.*s host=%.*s\n", sp_http_method_name(r.method), (int)r.path_len, r.path,
           (int)r.host_len, r.host);

    struct sp_fiber_pool *pool = sp_fiber_pool_new(NULL);
    int steps = 0, resumes = 0;
    struct sp_fiber *f = pool ? sp_fiber_new(pool, count, &steps) : NULL;
    if (!f)
        return 2;
    while (!sp_fiber_finished(f)) {
        sp_fiber_resume(f);
        resumes++;
    }
    sp_fiber_release(f);
    sp_fiber_pool_free(pool);
    printf("fiber: %d steps in %d resumes\n", steps, resumes);

    /* The configuration loader, with a key table of the program's own. */
    if (sp_service_register(&greet) != 0)
        return 3;
    static const char conf[] = "[greet g]\nlisten = 127.0.0.1:7000\ngreeting = hi there\n";
    char err[512];
    struct sp_config *cfg = sp_config_from_buffer(conf, strlen(conf), NULL, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return 3;
    }
    const struct greet_conf *g = cfg->services[0].conf;
    printf("config: greeting=%s\n", g->greeting);
    sp_config_free(cfg);
    return 0;
}
"""


@tap.case
def program_builds_against_the_install_with_pkg_config():
    need("pkg-config", "pkg-config")
    flags = sdk_flags()
    for f in flags:
        check(not f.startswith(("-I" + SRCDIR, "-L" + SRCDIR, "-I" + BUILDDIR, "-L" + BUILDDIR)),
              "a flag points into the source or build tree: %s" % f)
    work = tempfile.mkdtemp(prefix="program-", dir=TOP)
    src = os.path.join(work, "hello.c")
    with open(src, "w") as f:
        f.write(PROGRAM)
    exe = os.path.join(work, "hello")
    r = subprocess.run([CC, "-std=c11", "-Wall", "-Werror", "-o", exe, src] + flags,
                       capture_output=True, text=True, timeout=60, cwd=work)
    eq(r.returncode, 0, "%s hello.c %s: %s" % (CC, " ".join(flags), r.stderr))
    r = subprocess.run([exe], capture_output=True, text=True, timeout=30)
    eq((r.returncode, r.stdout),
       (0, "GET /hello host=example.org\nfiber: 3 steps in 4 resumes\nconfig: greeting=hi there\n"),
       "the program's output (stderr: %r)" % r.stderr)


# The example modules built out of tree: name -> the .so.
BUILT = {}


def build_example(name):
    """examples/NAME as installed, copied out and built with its own Makefile:
    a module built with nothing but pkg-config --cflags spindle."""
    need("pkg-config", "pkg-config")
    src = os.path.join(staged("docdir"), "examples", name)
    work = tempfile.mkdtemp(prefix="module-", dir=TOP)
    for f in (name + ".c", "Makefile"):
        shutil.copy(os.path.join(src, f), work)
    env = make_env()
    env["PKG_CONFIG_PATH"] = os.path.join(staged("libdir"), "pkgconfig")
    env["PKG_CONFIG_SYSROOT_DIR"] = DESTDIR
    r = subprocess.run(["make", "-s", "CC=" + CC, "CFLAGS=-O2 -Werror"], capture_output=True,
                       text=True, timeout=120, cwd=work, env=env)
    eq(r.returncode, 0, "make in examples/%s: %s%s" % (name, r.stdout, r.stderr))
    so = os.path.join(work, name + ".so")
    check(os.path.isfile(so), "no %s.so" % name)
    r = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True, text=True,
                       timeout=30)
    check(re.search(r"\bspindle_module$", r.stdout, re.M), "%s.so exports no spindle_module: %s"
          % (name, r.stdout))
    BUILT[name] = so


@tap.case
def example_modules_build_out_of_tree():
    build_example("hello")
    build_example("upper")


def recv_until(s, end):
    out = b""
    while not out.endswith(end):
        chunk = s.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


@tap.case
def installed_server_loads_the_example_modules():
    """The staged sbin/spindle runs the modules built above: hello's handler
    under /hello of an [http] service, upper as a whole [service]."""
    need("curl", "curl")
    check(set(BUILT) == {"hello", "upper"}, "the example modules were not built: %r" % BUILT)
    http_port, up_port = free_port(), free_port()
    while up_port == http_port:
        up_port = free_port()
    conf = ("[module hello]\npath = %s\ngreeting = Hi\n\n"
            "[http web]\nlisten = 127.0.0.1:%d\nhandle /hello = hello\n\n"
            "[module upper]\npath = %s\nmax_line = 32\n\n"
            "[service up]\nlisten = 127.0.0.1:%d\nmodule = upper\n"
            % (BUILT["hello"], http_port, BUILT["upper"], up_port))
    srv = Spindle(conf, binary=os.path.join(staged("sbindir"), "spindle"))
    try:
        srv.start(ports=[http_port, up_port])
        srv.wait_ready(1)
        r = subprocess.run(["curl", "-s", "--max-time", "5",
                            "http://127.0.0.1:%d/hello/x?name=world" % http_port],
                           capture_output=True, text=True, timeout=10)
        eq(r.returncode, 0, "curl /hello: %s" % r.stderr)
        eq(json.loads(r.stdout),
           {"greeting": "Hi", "path": "/hello/x", "query": {"name": "world"}, "hits": 1},
           "hello's answer")
        with connect(up_port) as s:
            # Two lines in one segment, then one in two: each answered whole.
            s.sendall(b"hello\nMixed Case 42\n")
            eq(recv_until(s, b"42\n"), b"HELLO\nMIXED CASE 42\n", "upper, two lines")
            s.sendall(b"half a ")
            s.sendall(b"line\n")
            eq(recv_until(s, b"\n"), b"HALF A LINE\n", "upper, a line in two writes")
            # max_line = 32: the module's own key was read.  The long line
            # is dropped to its end; the next one is answered.
            s.sendall(b"x" * 40 + b"\nnext\n")
            eq(recv_until(s, b"NEXT\n"), b"ERR line too long\nNEXT\n",
               "upper, a line over max_line")
            s.shutdown(socket.SHUT_WR)
            eq(s.recv(1), b"", "closed after the client's end")
        # A graceful shutdown (QUIT): a quiet connection (parked in
        # sp_iom_watch) does not hold up the drain; upper closes it after the
        # short grace (1s), well before shutdown_timeout (3s) would end the
        # worker.
        with connect(up_port) as s:
            s.sendall(b"idle\n")
            eq(recv_until(s, b"\n"), b"IDLE\n", "upper, before the drain")
            t0 = time.monotonic()
            srv.signal(signal.SIGQUIT)
            eq(s.recv(1), b"", "an idle connection closed by the drain")
            eq(srv.wait_exit(5), 0, "the installed server's exit status; log:\n" + srv.logs())
            took = time.monotonic() - t0
            check(took < 2.5, "the drain took %.2fs: the idle connection held it up" % took)
    finally:
        srv.stop()


def render(page):
    """groff with every warning on: returns its diagnostics."""
    r = subprocess.run(["groff", "-ww", "-b", "-z", "-man", page], capture_output=True,
                       text=True, timeout=30)
    eq(r.returncode, 0, "groff on " + page)
    return r.stderr


@tap.case
def man_pages_render_without_warnings():
    need("groff", "groff-base")
    for page in (os.path.join(staged("mandir"), "man8", "spindle.8"),
                 os.path.join(staged("mandir"), "man5", "spindle.conf.5")):
        eq(render(page), "", "groff warnings for " + page)
        with open(page) as f:
            text = f.read()
        check("@" not in re.sub(r"(?m)^\.\\\".*$", "", text).replace("\\(at", ""),
              "an @NAME@ left unsubstituted in " + page)
        check(DIRS["SP_RUNDIR"] + "/spindle/" in text, page + " names the run directory")


def plain(page):
    """The page as man shows it, without formatting."""
    r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", page], capture_output=True,
                       text=True, timeout=30)
    return re.sub(r"\s+", " ", r.stdout.replace("\u2010", "-").replace("\u2212", "-"))


@tap.case
def man_pages_cover_every_key_option_and_command():
    need("groff", "groff-base")
    conf5 = plain(os.path.join(staged("mandir"), "man5", "spindle.conf.5"))
    with open(os.path.join(SRCDIR, "docs", "config.md")) as f:
        doc = f.read()
    sections = re.findall(r"^## `\[(\w+)[^`]*\]`", doc, re.M)
    check(len(sections) >= 3, "sections of docs/config.md: %r" % sections)
    for s in sections:
        check(re.search(r"\[%s\b" % s, conf5), "spindle.conf(5) lacks the section [%s]" % s)
    keys = set(re.findall(r"^\| `(\w+)[^`]*` \|", doc, re.M)) - {"key"}
    check(len(keys) >= 20, "keys of docs/config.md: %r" % sorted(keys))
    eq(sorted(k for k in keys if not re.search(r"\b%s\b" % k, conf5)), [],
       "keys of docs/config.md missing from spindle.conf(5)")
    # Every option and -s command spindle -h lists is in spindle(8).
    r = subprocess.run([os.path.join(staged("sbindir"), "spindle"), "-h"], capture_output=True,
                       text=True, timeout=10)
    options = set(re.findall(r"^\s+(-\w|--\w+)", r.stdout, re.M))
    options |= set(re.findall(r"(--\w+)", r.stdout))
    commands = re.search(r"-s (\S+)\]", r.stdout).group(1).split("|")
    check(len(options) >= 6 and len(commands) >= 5, "from -h: %r %r" % (options, commands))
    page8 = plain(os.path.join(staged("mandir"), "man8", "spindle.8"))
    eq(sorted(o for o in options if o not in page8), [], "options missing from spindle(8)")
    eq(sorted(c for c in commands if not re.search(r"\b%s\b" % c, page8)), [],
       "-s commands missing from spindle(8)")


@tap.case
def systemd_unit_names_the_installed_paths_and_loads():
    unit = os.path.join(staged("docdir"), "examples", "spindle.service")
    with open(unit) as f:
        text = f.read()
    binary = os.path.join(DIRS["sbindir"], "spindle")
    conf = os.path.join(DIRS["sysconfdir"], "spindle", "spindle.conf")
    eq(re.findall(r"^ExecStart=(.*)$", text, re.M), ["%s -c %s" % (binary, conf)], "ExecStart")
    eq(re.findall(r"^ExecReload=(.*)$", text, re.M), ["%s -c %s -s reload" % (binary, conf)],
       "ExecReload")
    eq(bool(re.search(r"^RuntimeDirectory=spindle$", text, re.M)), DIRS["SP_RUNDIR"] == "/run",
       "RuntimeDirectory=spindle exactly when the run directory is /run")
    need("systemd-analyze", "systemd")
    # systemd checks that ExecStart exists: point it at the staged binary.
    copy = os.path.join(tempfile.mkdtemp(prefix="unit-", dir=TOP), "spindle.service")
    with open(copy, "w") as f:
        f.write(text.replace(binary, DESTDIR + binary))
    r = subprocess.run(["systemd-analyze", "verify", copy], capture_output=True, text=True,
                       timeout=60)
    eq((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify " + unit)
    # The socket unit beside it activates that service.
    sock = os.path.join(os.path.dirname(copy), "spindle.socket")
    shutil.copy(os.path.join(staged("docdir"), "examples", "spindle.socket"), sock)
    r = subprocess.run(["systemd-analyze", "verify", sock], capture_output=True, text=True,
                       timeout=60)
    eq((r.returncode, r.stdout + r.stderr), (0, ""), "systemd-analyze verify spindle.socket")


@tap.case
def logrotate_snippet_signals_the_default_pid_file():
    with open(os.path.join(staged("docdir"), "examples", "spindle.logrotate")) as f:
        text = f.read()
    pid = os.path.join(DIRS["SP_RUNDIR"], "spindle", "spindle.pid")
    check("pid=%s\n" % pid in text, "the snippet uses the default pid file %s:\n%s" % (pid, text))
    check(re.search(r'kill -USR1 "\$\(cat "\$pid"\)"', text), "the snippet sends USR1")
    check("@" not in text, "an @NAME@ left unsubstituted:\n" + text)


@tap.case
def make_uninstall_removes_every_file():
    r = make("uninstall", "DESTDIR=" + DESTDIR)
    eq(r.returncode, 0, "make uninstall: " + r.stderr[-2000:])
    eq(installed_files(), [], "files left after make uninstall")


try:
    tap.run()
finally:
    shutil.rmtree(TOP, ignore_errors=True)
