#!/bin/sh
# Instructions per request of one worker, counted by callgrind: deterministic,
# so unlike wall-clock figures a change of a few percent is not lost in noise.
#
#   bench/instr.sh [-n N] [-t THREADS] [-o DIR] [-r] [BINARY]   (default: -n 20000 -t 1 ./spindle)
#
# Starts BINARY with workers = 1 under valgrind --tool=callgrind (the worker
# is forked, so it is counted in its own output file), drives one fixed
# workload over a single connection on 127.0.0.1, stops the server and reads
# the worker's instruction total.  Workloads:
#   idle       connect, one request, close: the start/stop baseline
#   plaintext  N keep-alive GET /plaintext, one at a time
#   pipelined  N GET /plaintext, sent 16 per write
#   echo       N 64-byte echo messages, one at a time
#   module     N keep-alive GET /mplain, one at a time: the plaintext answer
#              from a module's handler (bench/modules/plaintext.so, next to
#              BINARY; skipped when it is not built), made once at init
#              (sp_http_ready), to compare with plaintext
#   module_dyn the same, written for each request (/mplain/dynamic)
#   ping       N RESP2 PINGs (multibulk, as redis-benchmark's PING_MBULK), one
#              at a time, to the command service ([cmd main]; skipped when
#              BINARY has none)
#   ping16     N PINGs, sent 16 per write
# Prints, per workload, (worker Ir - idle worker Ir) / N.  -o DIR keeps the
# callgrind profiles (DIR/WORKLOAD/cg.PID) for callgrind_annotate.  -r also
# runs ping and ping16 against redis-server (--save "" --appendonly no
# --io-threads 1) under callgrind, less a run with one PING: Redis's cron
# (10 times a second) is counted too, a few instructions per command.
set -eu

n=20000
threads=1
keep=
redis=0
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -o) keep=$2; shift 2 ;;
    -r) redis=1; shift ;;
    -h | --help) sed -n '2,26p' "$0"; exit 0 ;;
    *) break ;;
    esac
done
bin=$(readlink -f "${1:-./spindle}")
[ -x "$bin" ] || { echo "instr.sh: no binary $bin" >&2; exit 2; }
command -v valgrind >/dev/null || { echo "instr.sh: valgrind is needed" >&2; exit 2; }
if [ "$redis" = 1 ] && ! command -v redis-server >/dev/null; then
    echo "instr.sh: -r needs redis-server" >&2
    exit 2
fi

if [ -n "$keep" ]; then
    mkdir -p "$keep"
    dir=$(readlink -f "$keep")
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT INT TERM
fi

python3 - "$bin" "$dir" "$n" "$threads" "$redis" <<'EOF'
import os, re, signal, socket, subprocess, sys, time

BIN, DIR, N, THREADS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
REDIS = sys.argv[5] == "1"
REQ = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"
MREQ = b"GET /mplain HTTP/1.1\r\nHost: x\r\n\r\n"
DREQ = b"GET /mplain/dynamic HTTP/1.1\r\nHost: x\r\n\r\n"
PING = b"*1\r\n$4\r\nPING\r\n"
MODULE = os.path.join(os.path.dirname(BIN), "bench", "modules", "plaintext.so")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            raise RuntimeError("connection closed")
        buf += d
    return buf


def http_len(s):
    """Reads one response and returns its length (Content-Length bodies only)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, body = buf.partition(b"\r\n\r\n")
    cl = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < cl:
        body += s.recv(4096)
    return len(head) + 4 + cl


def idle(hp, ep, cp):
    with socket.create_connection(("127.0.0.1", hp)) as s:
        s.sendall(REQ)
        http_len(s)
    with socket.create_connection(("127.0.0.1", ep)) as s:
        s.sendall(b"x" * 64)
        recv_exact(s, 64)
    if cp:
        with socket.create_connection(("127.0.0.1", cp)) as s:
            s.sendall(PING)
            recv_exact(s, 7)


def plaintext(hp, ep, cp):
    with socket.create_connection(("127.0.0.1", hp)) as s:
        s.sendall(REQ)
        rlen = http_len(s)
        for _ in range(N - 1):
            s.sendall(REQ)
            recv_exact(s, rlen)


def one_by_one(hp, req):
    with socket.create_connection(("127.0.0.1", hp)) as s:
        s.sendall(req)
        rlen = http_len(s)
        for _ in range(N - 1):
            s.sendall(req)
            recv_exact(s, rlen)


def module(hp, ep, cp):
    one_by_one(hp, MREQ)


def module_dyn(hp, ep, cp):
    one_by_one(hp, DREQ)


def pings(cp, depth, n=None):
    """n (default N) PINGs, depth per write."""
    with socket.create_connection(("127.0.0.1", cp)) as s:
        left = N if n is None else n
        while left > 0:
            k = min(depth, left)
            s.sendall(PING * k)
            if recv_exact(s, 7 * k) != b"+PONG\r\n" * k:
                raise RuntimeError("PING was not answered +PONG")
            left -= k


def ping(hp, ep, cp):
    pings(cp, 1)


def ping16(hp, ep, cp):
    pings(cp, 16)


def pipelined(hp, ep, cp):
    with socket.create_connection(("127.0.0.1", hp)) as s:
        s.sendall(REQ)
        rlen = http_len(s)
        left = N - 1
        while left > 0:
            k = min(16, left)
            s.sendall(REQ * k)
            recv_exact(s, rlen * k)
            left -= k


def echo(hp, ep, cp):
    msg = b"0123456789abcdef" * 4
    with socket.create_connection(("127.0.0.1", ep)) as s:
        for _ in range(N):
            s.sendall(msg)
            recv_exact(s, 64)


def config(wd, hp, ep, cp):
    return ("[master]\nworkers = 1\nthreads = %d\nslots = 1\n"
            "pid_file = %s/pid\ncontrol_socket = %s/sock\nerror_log = %s/error.log\n"
            "[http main]\nlisten = 127.0.0.1:%d\n"
            "return /plaintext = 200 text/plain Hello, World!\n"
            "%s"
            "[echo main]\nlisten = 127.0.0.1:%d\n"
            "%s"
            % (THREADS, wd, wd, wd, hp,
               "handle /mplain = plain\n[module plain]\npath = %s\n" % MODULE
               if os.path.exists(MODULE) else "", ep,
               "[cmd main]\nlisten = 127.0.0.1:%d\n" % cp if cp else ""))


def has_cmd():
    """Whether BIN knows the command service (older builds refuse [cmd])."""
    wd = os.path.join(DIR, "check")
    os.makedirs(wd, exist_ok=True)
    conf = os.path.join(wd, "spindle.conf")
    with open(conf, "w") as f:
        f.write(config(wd, free_port(), free_port(), free_port()))
    return subprocess.call([BIN, "-t", "-c", conf], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) == 0


CMD = has_cmd()


def callgrind(argv, wd, ports, work):
    """Runs argv under callgrind, work() once every port connects, then SIGTERM;
    {pid: instructions} of every process profiled, the first one's pid."""
    out = os.path.join(wd, "cg.%p")
    p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out] + argv,
                         stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(wd, "valgrind.log"), "w"),
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                for port in ports:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or p.poll() is not None:
                    raise RuntimeError("%s did not start" % argv[0])
                time.sleep(0.2)
        work()
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=300)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    totals = {}
    for name in os.listdir(wd):
        if name.startswith("cg."):
            pid = int(name[3:])
            with open(os.path.join(wd, name)) as f:
                for line in f:
                    if line.startswith("totals:") or line.startswith("summary:"):
                        totals[pid] = int(line.split()[1])
    return totals, p.pid


def run(work):
    hp, ep = free_port(), free_port()
    cp = free_port() if CMD else None
    wd = os.path.join(DIR, work.__name__)
    os.makedirs(wd, exist_ok=True)
    conf = os.path.join(wd, "spindle.conf")
    with open(conf, "w") as f:
        f.write(config(wd, hp, ep, cp))
    totals, master = callgrind([BIN, "-c", conf], wd, [ep, hp] + ([cp] if cp else []),
                               lambda: work(hp, ep, cp))
    # Besides the master's: the worker's and, when a module is configured, the
    # module checker's (a short-lived child that only opens the module): the
    # worker is the one that ran the most.
    others = [v for k, v in totals.items() if k != master]
    if not others or len(others) > 2:
        raise RuntimeError("expected a worker profile (and a checker's), got %r" % totals)
    return max(others)


base = run(idle)
print("binary %s, threads = %d, N = %d" % (BIN, THREADS, N))
print("idle worker: %d instructions" % base)
for w in ((plaintext, pipelined, echo) + ((module, module_dyn) if os.path.exists(MODULE) else ())
          + ((ping, ping16) if CMD else ())):
    ir = run(w)
    print("%-10s %10.1f instructions/%s  (worker %d)"
          % (w.__name__, (ir - base) / N, "command" if w in (ping, ping16) else "request", ir),
          flush=True)


def run_redis(depth, n):
    """redis-server's instructions (all its threads) for n PINGs, depth per write."""
    cp = free_port()
    wd = os.path.join(DIR, "redis-%d-%d" % (depth, n))
    os.makedirs(wd, exist_ok=True)
    totals, _ = callgrind(["redis-server", "--port", str(cp), "--bind", "127.0.0.1",
                           "--save", "", "--appendonly", "no", "--io-threads", "1",
                           "--dir", wd, "--logfile", os.path.join(wd, "redis.log")],
                          wd, [cp], lambda: pings(cp, depth, n))
    if len(totals) != 1:
        raise RuntimeError("expected one redis-server profile, got %r" % totals)
    return sum(totals.values())


if REDIS:
    rbase = run_redis(1, 1)
    print("redis-server %s: idle %d instructions"
          % (subprocess.run(["redis-server", "--version"], capture_output=True,
                            text=True).stdout.split()[2], rbase))
    for depth, name in ((1, "ping"), (16, "ping16")):
        ir = run_redis(depth, N)
        print("%-10s %10.1f instructions/command  (redis-server %d)"
              % (name, (ir - rbase) / N, ir), flush=True)
EOF
