#!/usr/bin/env python3
"""Loadable modules: a TCP service written as a module ([service NAME] with
module = NAME) with a key of its own; `spindle -t` opens every module in a
checker child and refuses a missing file, a wrong api_version, a missing
entry symbol and a bad key value; a reload swaps the module's file (renamed
into place) for new workers, and a reload to a module that fails, crashes or
hangs in init, or cannot be opened, fails with the reason while the running
version keeps serving.

The test modules are built by make check from tests/modules/echo_upper.c
(tests/modules/local.mk) into $SPINDLE_MODULES."""
import os
import re
import shutil
import subprocess

from harness import BIN, Spindle, Tap, check, connect, eq, free_port

tap = Tap()
MODULES = os.environ.get("SPINDLE_MODULES") or os.path.abspath("tests/modules")
# This build's SP_API_VERSION, as the module header says.
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "worker", "include",
                       "spindle", "module.h")) as _f:
    API_VERSION = int(re.search(r"#define SP_API_VERSION\s+(\d+)", _f.read()).group(1))
PORT = free_port()
S = None


def services(path="upper.so", extra="greeting = Howdy\n"):
    return ("[service up]\nlisten = 127.0.0.1:%d\nmodule = upper\n\n"
            "[module upper]\npath = %s\n%s" % (PORT, path, extra))


def install(name):
    """Puts tests/modules/NAME.so in place of the running module's file the
    way a deployment should: a copy, then rename() over the old one."""
    tmp = os.path.join(S.dir, ".upper.so.tmp")
    shutil.copyfile(os.path.join(MODULES, name + ".so"), tmp)
    os.rename(tmp, os.path.join(S.dir, "upper.so"))


def recv_line(s):
    out = b""
    while not out.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed after %r" % out)
        out += chunk
    return out


def greeting():
    """A new connection's first line, and that it echoes upper-cased."""
    with connect(PORT) as s:
        first = recv_line(s)
        s.sendall(b"ping\n")
        eq(recv_line(s), b"PING\n", "echo upper-cased")
        return first


def check_conf(text):
    """spindle -t on a configuration beside S's (so that relative paths find
    the modules): (exit code, output)."""
    path = os.path.join(S.dir, "check.conf")
    with open(path, "w") as f:
        f.write(S.master_section("", 1, 1, "3s") + text)
    r = subprocess.run([BIN, "-t", "-c", path], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def setup():
    global S
    S = Spindle(services(), workers=2)
    install("echo_upper_v1")
    S.start(ports=[PORT])
    S.wait_ready(2)


@tap.case
def a_module_serves_a_tcp_service_with_its_own_key():
    eq(greeting(), b"Howdy v1\n", "greeting")


@tap.case
def check_accepts_a_good_module():
    rc, out = check_conf(services())
    eq(rc, 0, "spindle -t exit code (%s)" % out)


@tap.case
def check_refuses_a_missing_file():
    rc, out = check_conf(services(path="missing.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"module upper: cannot open \S+/missing\.so: .*No such file", out), out)


@tap.case
def check_refuses_a_wrong_api_version():
    shutil.copyfile(os.path.join(MODULES, "bad_api.so"), os.path.join(S.dir, "bad_api.so"))
    rc, out = check_conf(services(path="bad_api.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"module upper: \S+/bad_api\.so was built for API version 42, "
                    r"this spindle has version %d" % API_VERSION, out), out)


@tap.case
def check_refuses_a_file_without_the_entry_symbol():
    shutil.copyfile(os.path.join(MODULES, "no_symbol.so"), os.path.join(S.dir, "no_symbol.so"))
    rc, out = check_conf(services(path="no_symbol.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"module upper: \S+/no_symbol\.so has no symbol spindle_module", out), out)


@tap.case
def check_refuses_a_service_whose_module_provides_none():
    shutil.copyfile(os.path.join(MODULES, "no_service.so"), os.path.join(S.dir, "no_service.so"))
    rc, out = check_conf(services(path="no_service.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"check\.conf:11: \[service up\]: module upper provides no TCP service", out),
          out)


@tap.case
def check_survives_a_module_that_crashes_or_hangs_while_loading():
    for name in ("load_segv", "load_hang"):
        shutil.copyfile(os.path.join(MODULES, name + ".so"), os.path.join(S.dir, name + ".so"))
    rc, out = check_conf(services(path="load_segv.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"module check: the checker died without a verdict", out), out)
    rc, out = check_conf(services(path="load_hang.so"))
    eq(rc, 1, "exit code")
    check(re.search(r"module check: no verdict within 5000 ms", out), out)


@tap.case
def check_runs_the_module_key_table():
    # [master] takes 8 lines (Spindle.master_section), the service 4: the
    # module's keys start at line 15.
    rc, out = check_conf(services(extra="greeting = Hi\nmax_read = lots\n"))
    eq(rc, 1, "exit code")
    check(re.search(r"check\.conf:16: invalid max_read 'lots'", out), out)
    rc, out = check_conf(services(extra="max_read = 1m\n"))
    check(rc == 1 and re.search(r"check\.conf:15: max_read '1m' out of range \(1\.\.4k\)", out),
          out)
    rc, out = check_conf(services(extra="colour = red\n"))
    check(rc == 1 and re.search(r"check\.conf:15: unknown key 'colour' in \[module upper\]", out),
          out)


@tap.case
def check_refuses_a_service_naming_no_module():
    rc, out = check_conf("[service up]\nlisten = 127.0.0.1:%d\nmodule = nope\n" % PORT)
    eq(rc, 1, "exit code")
    check(re.search(r"check\.conf:11: \[service up\]: no \[module nope\] section", out), out)


@tap.case
def reload_swaps_the_module_for_new_connections():
    install("echo_upper_v2")
    rc, out = S.ctl("reload")
    eq(rc, 0, "reload exit code (%s)" % out)
    eq(greeting(), b"Howdy v2\n", "greeting after the reload")


def failed_reload(name, reason):
    """Reloads to module NAME; the reload must fail with reason and v2 must
    keep serving, on an open connection and on new ones."""
    with connect(PORT) as s:
        eq(recv_line(s), b"Howdy v2\n", "greeting before")
        install(name)
        try:
            rc, out = S.ctl("reload", timeout=30)
            eq(rc, 1, "reload exit code (%s)" % out)
            check(re.search(reason, out), "reason %r not in %r" % (reason, out))
            check("still running generation" in out, out)
            s.sendall(b"still here\n")
            eq(recv_line(s), b"STILL HERE\n", "the open connection")
        finally:
            install("echo_upper_v2")
    eq(greeting(), b"Howdy v2\n", "greeting after the failed reload")
    eq(len(S.wait_ready(2)), 2, "workers")


@tap.case
def reload_to_an_init_that_fails_keeps_the_old_version():
    failed_reload("init_fail", r"module upper: init failed: refused to start \(test\)")


@tap.case
def reload_to_an_init_that_crashes_keeps_the_old_version():
    failed_reload("init_segv", r"module upper: init crashed \(SIGSEGV\)")


@tap.case
def reload_to_an_init_that_never_returns_keeps_the_old_version():
    failed_reload("init_hang", r"module upper: init did not return within 3 s")


@tap.case
def reload_to_a_wrong_api_version_is_refused_before_any_worker_starts():
    failed_reload("bad_api", r"configuration rejected: module upper: .* API version 42")


@tap.case
def reload_to_a_file_without_the_entry_symbol_is_refused():
    failed_reload("no_symbol", r"configuration rejected: module upper: .* no symbol")


@tap.case
def reload_to_a_module_that_hangs_while_loading_is_refused():
    failed_reload("load_hang", r"configuration rejected: module check: no verdict within")


@tap.case
def a_module_crashing_while_serving_costs_its_worker_only():
    before = S.wait_ready(2)
    with connect(PORT) as s:
        eq(recv_line(s), b"Howdy v2\n", "greeting")
        s.sendall(b"segv\n")
        check(s.recv(100) == b"", "the connection ends with its worker")
    check(S.wait_log(r"died: signal 11"), S.logs())
    after = S.wait_ready(2)
    eq(len(set(before) & set(after)), 1, "one worker replaced (%r -> %r)" % (before, after))
    eq(greeting(), b"Howdy v2\n", "greeting after the respawn")


setup()
tap.run()
