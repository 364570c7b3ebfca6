#!/usr/bin/env python3
"""The command service ([cmd NAME]) driven the way Redis users drive Redis:
redis-cli scripted, redis-benchmark (PING_INLINE, PING_MBULK and a module's
command, with and without -P 16, 0 errors), raw RESP2 and inline frames,
pipelines, every protocol error with Redis's wording followed by a close,
limits (max_args, max_arg_size, max_buffer), a client that announces 64
arguments of 512 MB and sends none of them (the worker must not allocate
them), and the kvdemo module's commands (KV.UPPER locally; KV.GET/KV.SET/
KV.DEL through hiredis against a real redis-server started here)."""
import os
import shutil
import socket
import subprocess
import time

from harness import BIN, RedisServer, Spindle, Tap, check, connect, eq, free_port, need, rss_kb

tap = Tap()
KVDEMO = os.path.join(os.path.dirname(BIN), "examples", "kvdemo", "kvdemo.so")
PORT = free_port()   # defaults, kvdemo's commands
SMALL = free_port()  # small limits
S = None
REDIS_SERVER = RedisServer()
REDIS = REDIS_SERVER.port
REDIS_PROC = None  # the server, once it runs


def have(prog):
    return shutil.which(prog) is not None


def setup():
    global S
    kv = ""
    commands = ""
    if os.path.exists(KVDEMO):
        kv = "[module kvdemo]\npath = %s\nredis = 127.0.0.1:%d\ntimeout = 2s\n\n" % (KVDEMO, REDIS)
        commands = "commands = kvdemo\n"
    S = Spindle("""%s
[cmd main]
listen = 127.0.0.1:%d
%s
[cmd small]
listen = 127.0.0.1:%d
max_args = 8
max_arg_size = 60k
max_buffer = 64k
""" % (kv, PORT, commands, SMALL))
    S.start(ports=[PORT, SMALL])
    S.wait_ready(1)
    global REDIS_PROC
    REDIS_PROC = REDIS_SERVER.start()


def need_kvdemo():
    need(os.path.exists(KVDEMO),
         "examples/kvdemo/kvdemo.so was not built (configure found no hiredis: libhiredis-dev)")


def cli(*args, port=PORT, stdin=None):
    need(have("redis-cli"), "redis-cli not installed (Debian package redis-tools)")
    r = subprocess.run(["redis-cli", "-p", str(port)] + list(args), input=stdin,
                       capture_output=True, timeout=20)
    return r.stdout.decode()


def read_until(s, n_bytes=None, endswith=None, timeout=5.0):
    s.settimeout(timeout)
    out = b""
    while True:
        if n_bytes is not None and len(out) >= n_bytes:
            return out
        if endswith is not None and out.endswith(endswith):
            return out
        chunk = s.recv(65536)
        if not chunk:
            return out
        out += chunk


def read_to_close(s, timeout=5.0):
    """What arrives until the server closes (a reset counts as the close)."""
    s.settimeout(timeout)
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return out
        if not chunk:
            return out
        out += chunk


def frame(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


# ---- redis-cli -------------------------------------------------------------------------


@tap.case
def redis_cli_runs_the_builtin_commands():
    eq(cli("PING"), "PONG\n", "PING")
    eq(cli("ping", "hello world"), "hello world\n", "PING with a message, any case")
    eq(same_as_redis("ECHO", "a\r\nb"), "a\r\nb\n", "ECHO is binary safe")
    t = cli("TIME").split()
    eq(len(t), 2, "TIME answers two values")
    check(abs(int(t[0]) - time.time()) < 5, "TIME's seconds are now: %r" % t)
    check(0 <= int(t[1]) < 1000000, "microseconds")
    info = cli("INFO")
    check("total_commands_processed:" in info and "spindle_version:" in info, info)
    n = int(cli("COMMAND", "COUNT"))
    check(n >= 7, "COMMAND COUNT counts the built-ins: %d" % n)
    eq(same_as_redis("CONFIG", "GET", "save"), "save\n\n", "CONFIG GET save: nothing persists")
    eq(cli("config", "get", "APPEND*"), "appendonly\nno\n", "a pattern, any case")
    eq(same_as_redis("CONFIG", "GET", "no-such-parameter"), "\n", "nothing matches: an empty array")


def same_as_redis(*args, stdin=None):
    """redis-cli's output for spindle, checked against real Redis's where
    redis-server is here: the same bytes."""
    out = cli(*args, stdin=stdin)
    if REDIS_PROC:
        eq(out, cli(*args, stdin=stdin, port=REDIS), "the same as Redis for %r" % (args,))
    return out


@tap.case
def redis_cli_sees_redis_wording_for_errors():
    eq(same_as_redis("NOSUCH", "a", "b"),
       "ERR unknown command 'NOSUCH', with args beginning with: 'a' 'b' \n\n", "unknown command")
    eq(same_as_redis("ECHO"), "ERR wrong number of arguments for 'echo' command\n\n", "arity")
    same_as_redis("echo", "a", "b")
    same_as_redis("PING", "a", "b")
    same_as_redis("nosuch", "x" * 300)


@tap.case
def redis_cli_scripted_from_stdin():
    out = same_as_redis(stdin=b"PING\nECHO one\nECHO two\nNOSUCH\nPING last\n")
    eq(out.splitlines(),
       ["PONG", "one", "two", "ERR unknown command 'NOSUCH', with args beginning with: ", "",
        "last"], "each line answered in order")


# ---- raw frames --------------------------------------------------------------------------


@tap.case
def inline_and_multibulk_frames_and_a_pipeline_answered_in_order():
    with connect(PORT) as s:
        s.sendall(b"PING\r\n")
        eq(read_until(s, endswith=b"\r\n"), b"+PONG\r\n", "inline PING")
        s.sendall(b"ECHO  spaced\n")
        eq(read_until(s, n_bytes=12), b"$6\r\nspaced\r\n", "inline with a bare LF")
        batch = b"".join(frame("ECHO", "m%d" % i) for i in range(2000))
        want = b"".join(b"$%d\r\nm%d\r\n" % (len(b"m%d" % i), i) for i in range(2000))
        s.sendall(batch)
        eq(read_until(s, n_bytes=len(want), timeout=10), want, "2000 pipelined ECHOs in order")
        # A frame trickled a byte at a time.
        for b in frame("ECHO", "trickled"):
            s.send(bytes([b]))
            time.sleep(0.001)
        eq(read_until(s, n_bytes=14), b"$8\r\ntrickled\r\n", "trickled frame")
        s.sendall(b"*0\r\n\r\nPING\r\n")
        eq(read_until(s, endswith=b"\r\n"), b"+PONG\r\n", "empty frames are skipped")


@tap.case
def a_large_argument_arrives_in_pieces():
    big = os.urandom(3 * 1024 * 1024)
    with connect(PORT) as s:
        s.sendall(frame(b"ECHO", big))
        want = b"$%d\r\n" % len(big) + big + b"\r\n"
        eq(read_until(s, n_bytes=len(want), timeout=20), want, "3 MB argument echoed")
        s.sendall(b"PING\r\n")
        eq(read_until(s, endswith=b"\r\n"), b"+PONG\r\n", "the connection goes on")


def protocol_error(port, data, message):
    with connect(port) as s:
        s.sendall(frame("PING") + data)
        out = read_to_close(s)
    eq(out, b"+PONG\r\n-ERR Protocol error: " + message + b"\r\n",
       "answer before, the error, then close: %r" % data[:40])


@tap.case
def protocol_errors_are_answered_then_the_connection_closes():
    protocol_error(PORT, b"*abc\r\n", b"invalid multibulk length")
    protocol_error(PORT, b"*1\r\n$x\r\n", b"invalid bulk length")
    protocol_error(PORT, b"*1\r\n+PING\r\n", b"expected '$', got '+'")
    protocol_error(PORT, b"*2000000\r\n", b"invalid multibulk length")
    protocol_error(SMALL, b"*9\r\n", b"invalid multibulk length")
    protocol_error(SMALL, b"*1\r\n$61441\r\n", b"invalid bulk length")
    protocol_error(PORT, b"x" * 70000, b"too big inline request")


@tap.case
def limits_of_a_section_hold():
    with connect(SMALL) as s:
        s.sendall(frame("ECHO", "x" * 61440))
        eq(read_until(s, n_bytes=61440 + 10), b"$61440\r\n" + b"x" * 61440 + b"\r\n",
           "an argument of max_arg_size passes")
        s.sendall(frame("PING", *(["a"] * 6)))
        eq(read_until(s, endswith=b"\r\n"),
           b"-ERR wrong number of arguments for 'ping' command\r\n", "max_args arguments parse")


@tap.case
def announcing_huge_arguments_allocates_nothing():
    """64 arguments of 512 MB announced by each of 20 clients, a few bytes
    sent: the worker's memory must stay where it was (Redis's CVE-2021-32675),
    and other clients are served meanwhile."""
    worker = S.wait_ready(1)[0]
    before = rss_kb(worker)
    socks = []
    try:
        for _ in range(20):
            s = connect(PORT)
            s.sendall(b"*64\r\n$536870912\r\nabc")
            socks.append(s)
        time.sleep(0.5)
        eq(cli("PING"), "PONG\n", "others are served")
        grew = rss_kb(worker) - before
        check(grew < 8 * 1024, "the worker grew by %d KB for 20 such clients" % grew)
    finally:
        for s in socks:
            s.close()


@tap.case
def a_client_past_max_buffer_is_closed():
    # Two arguments of 40 KB: each within max_arg_size (60k), the command
    # past max_buffer (64k).
    with connect(SMALL) as s:
        try:
            s.sendall(frame("ECHO", "a" * 40000, "b" * 40000))
        except OSError:
            pass
        out = read_to_close(s, timeout=5)
        eq(out, b"", "closed, nothing answered")
    check(S.wait_log("past max_buffer"), "the log says why")
    eq(cli("PING", port=SMALL), "PONG\n", "the service goes on")


@tap.case
def hostile_clients_half_close_reset_and_pause():
    import struct
    # Half-close after a pipeline: every command is answered, then the close.
    with connect(PORT) as s:
        s.sendall(frame("PING") * 3 + frame("ECHO", "last"))
        s.shutdown(socket.SHUT_WR)
        eq(read_to_close(s), b"+PONG\r\n" * 3 + b"$4\r\nlast\r\n", "answered, then closed")
    # A reset in the middle of a bulk, and one in the middle of a header line.
    for partial in (frame("ECHO", "x" * 100000)[:50000], b"*2\r\n$4\r\nEC"):
        s = connect(PORT)
        s.sendall(partial)
        time.sleep(0.05)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    # A client that pauses inside a command, then finishes it.
    with connect(PORT) as s:
        f = frame("ECHO", "paused")
        s.sendall(f[:9])
        time.sleep(0.3)
        s.sendall(f[9:])
        eq(read_until(s, n_bytes=12), b"$6\r\npaused\r\n", "answered after the pause")
    eq(cli("PING"), "PONG\n", "the worker serves on")
    check(S.log_count("died") == 0, "no worker died:\n" + S.logs())


@tap.case
def quit_answers_ok_and_closes():
    with connect(PORT) as s:
        s.sendall(frame("QUIT") + frame("PING"))
        eq(read_to_close(s), b"+OK\r\n", "OK, and nothing after QUIT is run")


# ---- redis-benchmark -----------------------------------------------------------------------


def bench(args, what):
    need(have("redis-benchmark"), "redis-benchmark not installed (Debian package redis-tools)")
    r = subprocess.run(["redis-benchmark", "-p", str(PORT), "-c", "32", "-n", "20000", "--csv"] +
                       args, capture_output=True, timeout=120)
    out = r.stdout.decode() + r.stderr.decode()
    eq(r.returncode, 0, "redis-benchmark exit status (%s): %s" % (what, out[-500:]))
    check("rror" not in out and "WARNING" not in out,
          "no errors, no warnings (%s): %s" % (what, out[-500:]))
    rows = [l for l in r.stdout.decode().splitlines() if l.startswith('"') and "rps" not in l]
    check(rows, "a result row (%s): %s" % (what, out[-500:]))
    return rows


@tap.case
def redis_benchmark_ping_inline_and_mbulk_without_and_with_pipelining():
    before = int(cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    rows = bench(["-t", "ping_inline,ping_mbulk"], "ping")
    eq(len(rows), 2, "two rows")
    rows = bench(["-t", "ping_inline,ping_mbulk", "-P", "16"], "ping -P 16")
    eq(len(rows), 2, "two rows")
    after = int(cli("INFO", "stats").split("total_commands_processed:")[1].split()[0])
    # One worker: its counter saw every command of the four runs.
    check(after - before >= 80000, "the worker answered %d commands" % (after - before))


@tap.case
def redis_benchmark_a_module_command():
    need_kvdemo()
    bench(["kv.upper", "hello"], "kv.upper")
    bench(["-P", "16", "kv.upper", "hello"], "kv.upper -P 16")
    eq(cli("kv.upper", "hello"), "HELLO\n", "the module's answer")


@tap.case
def two_scheduler_threads_serve_benchmark_and_module_commands():
    """threads = 2: connections land on both threads, each stays on its own;
    kvdemo's connection pool is shared by both."""
    need_kvdemo()
    need(REDIS_PROC, "redis-server not installed (Debian package redis-server)")
    port = free_port()
    s2 = Spindle("[module kvdemo]\npath = %s\nredis = 127.0.0.1:%d\n\n"
                 "[cmd x]\nlisten = 127.0.0.1:%d\ncommands = kvdemo\n" % (KVDEMO, REDIS, port),
                 threads=2)
    try:
        s2.start(ports=[port])
        s2.wait_ready(1)
        r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "32", "-n", "20000",
                            "--csv", "-t", "ping_mbulk", "-P", "4"], capture_output=True,
                           timeout=120)
        out = r.stdout.decode() + r.stderr.decode()
        check(r.returncode == 0 and "rror" not in out and "WARNING" not in out, out[-500:])
        r = subprocess.run(["redis-benchmark", "-p", str(port), "-c", "32", "-n", "2000",
                            "--csv", "kv.set", "k", "v"], capture_output=True, timeout=120)
        out = r.stdout.decode() + r.stderr.decode()
        check(r.returncode == 0 and "rror" not in out and "WARNING" not in out, out[-500:])
        eq(cli("kv.get", "k", port=port), "v\n", "the value set through both threads")
    finally:
        s2.stop()


# ---- kvdemo against a real Redis -------------------------------------------------------------


@tap.case
def kvdemo_get_set_through_hiredis():
    need_kvdemo()
    need(REDIS_PROC, "redis-server not installed (Debian package redis-server)")
    eq(cli("kv.set", "k1", "v1"), "OK\n", "SET")
    eq(cli("kv.get", "k1"), "v1\n", "GET")
    eq(cli("-p", str(REDIS), "GET", "k1", port=REDIS), "v1\n", "Redis holds it")
    eq(cli("kv.del", "k1", "nokey"), "1\n", "DEL counts")
    eq(cli("kv.get", "k1"), "\n", "nil after DEL")
    eq(cli("kv.call", "INCRBY", "n", "5"), "5\n", "any command passed on")
    eq(cli("kv.call", "NOPE"), "ERR unknown command 'NOPE', with args beginning with: \n\n",
       "Redis's error passed on")
    with connect(PORT) as s:
        s.sendall(frame("kv.set", "bin", b"\x00\r\n\xff") + frame("kv.get", "bin"))
        want = b"+OK\r\n$4\r\n\x00\r\n\xff\r\n"
        eq(read_until(s, n_bytes=len(want)), want, "binary safe")


@tap.case
def kvdemo_reports_an_unreachable_redis():
    need_kvdemo()
    dead = free_port()
    s2 = Spindle("[module kvdemo]\npath = %s\nredis = 127.0.0.1:%d\ntimeout = 1s\n\n"
                 "[cmd x]\nlisten = 127.0.0.1:%d\ncommands = kvdemo\n" % (KVDEMO, dead, free_port()))
    try:
        port = int(open(s2.conf).read().split("listen = 127.0.0.1:")[1].split()[0])
        s2.start(ports=[port])
        out = cli("kv.get", "x", port=port)
        check(out.startswith("ERR kvdemo: cannot reach Redis at 127.0.0.1:%d" % dead), out)
        eq(cli("PING", port=port), "PONG\n", "still serving")
    finally:
        s2.stop()


# ---- configuration ---------------------------------------------------------------------------


@tap.case
def bad_commands_lines_name_file_line_and_key():
    d = Spindle("[cmd x]\nlisten = 127.0.0.1:%d\ncommands = nosuch\n" % free_port())
    r = subprocess.run([BIN, "-t", "-c", d.conf], capture_output=True, timeout=20)
    err = r.stderr.decode() + r.stdout.decode()
    check(r.returncode != 0, "refused")
    check("spindle.conf:" in err and "commands: no [module nosuch] section" in err, err)
    d = Spindle("[cmd x]\nlisten = 127.0.0.1:%d\nmax_arg_size = 1g\n" % free_port())
    r = subprocess.run([BIN, "-t", "-c", d.conf], capture_output=True, timeout=20)
    err = r.stderr.decode() + r.stdout.decode()
    check(r.returncode != 0 and "max_arg_size" in err, err)


setup()
tap.run()
