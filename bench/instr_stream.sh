#!/bin/sh
# Instructions per request of one worker process, counted by callgrind (deterministic:
# no timing noise), for three workloads on one connection each:
#   plaintext  sequential keep-alive GET /plaintext
#   pipelined  GET /plaintext in batches of 16 sent with one write
#   echo       64-byte messages, each waited for before the next
# Each workload runs twice, with N and 2N requests, on a fresh server under
# valgrind; (Ir(2N) - Ir(N)) / N is the cost of one request, with start-up
# and shutdown cancelled out.  The master is not counted.
#
#   bench/instr_stream.sh [N]        (default 4000; run from the source tree
#                                     after make; prints one line per workload)
set -eu
N=${1:-4000}
BIN=${SPINDLE:-./spindle}
[ -x "$BIN" ] || { echo "no $BIN: build first" >&2; exit 2; }
exec python3 - "$BIN" "$N" <<'EOF'
import os, re, shutil, signal, socket, subprocess, sys, tempfile, time

BIN, N = os.path.abspath(sys.argv[1]), int(sys.argv[2])

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p

def connect(port, deadline):
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=30)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)

def recv_until(s, buf, pred):
    while not pred(buf):
        d = s.recv(65536)
        if not d:
            raise RuntimeError("connection closed")
        buf += d
    return buf

BODY = b"Hello, World!"
REQ = b"GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n"

def http(s, n, batch):
    buf, done = b"", 0
    while done < n:
        k = min(batch, n - done)
        s.sendall(REQ * k)
        buf = recv_until(s, buf, lambda b: b.count(BODY) >= k)
        buf = buf[buf.rfind(BODY) + len(BODY):]
        done += k

def echo(s, n):
    msg = b"x" * 64
    for _ in range(n):
        s.sendall(msg)
        recv_until(s, b"", lambda b: len(b) >= 64)

def measure(kind, n):
    d = tempfile.mkdtemp(prefix="spindle-instr-")
    try:
        hp, ep = free_port(), free_port()
        conf = os.path.join(d, "spindle.conf")
        with open(conf, "w") as f:
            f.write("[master]\nworkers = 1\nslots = 1\nthreads = 1\n"
                    "pid_file = %s/pid\ncontrol_socket = %s/sock\nerror_log = %s/error.log\n"
                    "[http h]\nlisten = 127.0.0.1:%d\naccess_log = off\n"
                    "return /plaintext = 200 text/plain Hello, World!\n"
                    "[echo e]\nlisten = 127.0.0.1:%d\n" % (d, d, d, hp, ep))
        p = subprocess.Popen(["valgrind", "--tool=callgrind", "--callgrind-out-file=%s/cg.%%p" % d,
                              BIN, "-c", conf], cwd=d, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            s = connect(ep if kind == "echo" else hp, time.time() + 60)
            if kind == "echo":
                echo(s, n)
            else:
                http(s, n, 16 if kind == "pipelined" else 1)
            s.close()
        finally:
            os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=120)
        total = 0
        for name in os.listdir(d):
            # The workers' files: the master's work (heartbeats) goes by time.
            if name.startswith("cg.") and name != "cg.%d" % p.pid:
                with open(os.path.join(d, name)) as f:
                    m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
                    total += int(m.group(1)) if m else 0
        return total
    finally:
        shutil.rmtree(d, ignore_errors=True)

for kind in ("plaintext", "pipelined", "echo"):
    a, b = measure(kind, N), measure(kind, 2 * N)
    print("%-10s %8.1f instructions/request  (Ir %d for %d, %d for %d)"
          % (kind, (b - a) / N, a, N, b, 2 * N), flush=True)
EOF
