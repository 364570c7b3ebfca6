#!/usr/bin/env python3
"""bench/run's chart says what was run, where and when, warns when the numbers are
weak, shows the epoll floor and CPU per request, and gives the idle numbers the same
way round as the table.  Runs bench/run's write_results on made-up results, with a
stand-in for gnuplot that keeps the files it is given (no benchmark is run).  Also reads
made-up redis-benchmark output as the ping rows do: rate, latency, errors."""
import datetime
import importlib.machinery
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.environ.get("SPINDLE_SRCDIR") or os.path.dirname(HERE)
RUN = os.path.join(SRCDIR, "bench", "run")

GNUPLOT_STUB = r'''#!/usr/bin/env python3
import os, re, shutil, sys
keep = os.environ["CHART_KEEP"]
expr = sys.argv[sys.argv.index("-e") + 1]
with open(os.path.join(keep, "argv"), "w") as f:
    f.write(expr + "\n")
for name, path in re.findall(r"(\w+)\s*=\s*'([^']*)'", expr):
    if name == "outfile":
        open(path, "wb").close()
    elif os.path.exists(path):
        shutil.copyfile(path, os.path.join(keep, name))
'''


def load_run():
    loader = importlib.machinery.SourceFileLoader("bench_run", RUN)
    spec = importlib.util.spec_from_loader("bench_run", loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def result(wl, server, value, cpu=None, other=0.0, pct=100.0):
    return {"workload": wl, "base": wl, "server": server, "workers": 1, "round": 1,
            "value": value, "errors": 0, "cpu_us_per_op": cpu, "cpu_pct": pct,
            "other_cpu_pct": other}


# One round, as --quick makes.  plaintext: spindle/libevent 1.25, spindle/nginx 2.5,
# spindle/epoll 0.5; json ran while something else took 35 % of the CPUs; idle:
# spindle 400 B per connection, libevent 1600, nginx 800 (the table's ratios 0.25, 0.5);
# ping (the command service): spindle/redis 1.5, CPU per command 3.5 and 4.5 us;
# proxy: spindle/nginx 1.6, CPU per request 15.5 and 24.5 us; tlsnew: spindle/nginx 1.2,
# CPU per handshake 310 and 370 us.
RESULTS = [
    result("plaintext", "spindle", 100000, 10.0), result("plaintext", "libevent", 80000, 12.5),
    result("plaintext", "nginx", 40000, 20.0), result("plaintext", "epoll", 200000, 5.0),
    result("json", "spindle", 90000, 11.0, other=35.0),
    result("json", "libevent", 90000, 11.0, other=35.0),
    result("idle", "spindle", 400), result("idle", "libevent", 1600),
    result("idle", "nginx", 800),
    result("ping", "spindle", 30000, 3.5, pct=60.0), result("ping", "redis", 20000, 4.5, pct=60.0),
    result("proxy", "spindle", 48000, 15.5), result("proxy", "nginx", 30000, 24.5),
    result("tlsnew", "spindle", 1200, 310.0), result("tlsnew", "nginx", 1000, 370.0),
]
WORKLOADS = [("plaintext", 1), ("json", 1), ("idle", 1), ("ping", 1), ("proxy", 1),
             ("tlsnew", 1)]


class Programs:
    def __init__(self, stub):
        self.stub = stub

    def path(self, name):
        return self.stub if name == "gnuplot" else None


def make_chart(tmp):
    run = load_run()
    stub = os.path.join(tmp, "gnuplot")
    with open(stub, "w") as f:
        f.write(GNUPLOT_STUB)
    os.chmod(stub, 0o755)
    keep = os.path.join(tmp, "keep")
    os.mkdir(keep)
    os.environ["CHART_KEEP"] = keep
    servers = {"plaintext": ["spindle", "libevent", "nginx", "epoll"],
               "json": ["spindle", "libevent"], "idle": ["spindle", "libevent", "nginx"],
               "ping": ["spindle", "redis"], "proxy": ["spindle", "nginx"],
               "tlsnew": ["spindle", "nginx"]}
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")
    try:
        run.write_results(RESULTS, WORKLOADS, lambda wl: servers[wl], "stamp",
                          os.path.join(tmp, "out"), Programs(stub), False,
                          run={"quick": True, "rounds": 1, "duration": 2, "warmup": 0,
                               "workers": 1})
    finally:
        sys.stdout.close()
        sys.stdout = saved
    files = {}
    for name in os.listdir(keep):
        with open(os.path.join(keep, name)) as f:
            files[name] = f.read()
    return files


def numbers(text):
    return {round(float(x), 4) for x in re.findall(r"(?<![\w.])-?\d+(?:\.\d+)?", text)}


def data(files):
    """Everything the chart plots, without the titles."""
    return "".join(v for k, v in files.items() if k not in ("argv", "varsfile"))


def main():
    tmp = tempfile.mkdtemp(prefix="spindle-chart-")
    cases = []

    def case(fn):
        cases.append(fn)
        return fn

    files = {}

    @case
    def chart_is_drawn_from_the_results():
        files.update(make_chart(tmp))
        assert files, "gnuplot was not called"

    @case
    def chart_shows_the_epoll_floor():
        assert 0.5 in numbers(data(files)), "spindle/epoll_srv 0.5 not plotted:\n%s" % files

    @case
    def chart_shows_cpu_per_request():
        got = numbers(data(files))
        for v in (10.0, 12.5, 20.0, 5.0):
            assert v in got, "CPU %.1f us per request not plotted:\n%s" % (v, files)

    @case
    def chart_shows_redis_beside_the_command_rows():
        got = numbers(files.get("thrfile", ""))
        assert 1.5 in got, "spindle/redis 1.5 not plotted:\n%s" % files
        got = numbers(files.get("cpufile", ""))
        assert {3.5, 4.5} <= got, "CPU per command of spindle and redis not plotted:\n%s" % files
        text = files.get("varsfile", "")
        assert re.search(r"client-bound.*ping \(all\)", text), \
            "redis below 90%% CPU not warned about:\n%s" % text

    @case
    def chart_shows_the_proxy_and_tls_rows_against_nginx():
        got = numbers(files.get("thrfile", ""))
        assert {1.6, 1.2} <= got, "spindle/nginx of proxy and tlsnew not plotted:\n%s" % files
        got = numbers(files.get("cpufile", ""))
        assert {15.5, 24.5, 310.0, 370.0} <= got, "CPU per request not plotted:\n%s" % files

    @case
    def proxy_and_tls_configurations_are_alike_on_both_servers():
        # What the comparison rests on: both proxies keep 32 idle upstream connections
        # over HTTP/1.1, both TLS servers use one certificate and resume no session.
        run = load_run()
        lab = run.Lab.__new__(run.Lab)
        lab.upstream, lab.cert = (None, 9001), ("/c.pem", "/k.pem")
        sp, ng = lab.extra("proxy", 9002)
        assert "server = 127.0.0.1:9001" in sp and "keepalive = 32" in sp, sp
        assert "listen = 127.0.0.1:9002" in sp and "proxy /plaintext = app" in sp, sp
        for want in ("server 127.0.0.1:9001", "keepalive 32", "proxy_http_version 1.1",
                     'proxy_set_header Connection ""', "listen 127.0.0.1:9002"):
            assert want in ng, "%s not in nginx's proxy configuration:\n%s" % (want, ng)
        sp, ng = lab.extra("tls", 9003)
        assert "listen = 127.0.0.1:9003 tls" in sp and "tls_certificate = /c.pem" in sp, sp
        assert "tls_certificate_key = /k.pem" in sp and "tls_session_tickets = off" in sp, sp
        for want in ("listen 127.0.0.1:9003 ssl", "ssl_certificate /c.pem;",
                     "ssl_certificate_key /k.pem;", "ssl_session_tickets off;",
                     "ssl_session_cache off;", "NumTickets 0"):
            assert want in ng, "%s not in nginx's tls configuration:\n%s" % (want, ng)
        conf = run.nginx_conf("/tmp/x", 1, 9000, "/www", 1024, ng)
        assert "@EXTRA@" not in conf and ng.strip() in conf, conf

    @case
    def redis_benchmark_output_is_read_and_its_errors_counted():
        run = load_run()
        head = '"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",' \
               '"p95_latency_ms","p99_latency_ms","max_latency_ms"\n'
        line = '"PING_MBULK","21891.42","1.863","0.432","1.231","6.287","11.071","19.311"\n'
        warn = "WARNING: Could not fetch server CONFIG\n"
        kv = run.benchmark_kv(0, head + line, warn)
        res = run.cmd_result(kv, 50000)
        assert res["value"] == 21891.42 and res["ops"] == 50000 and res["errors"] == 0, res
        assert abs(res["p50_us"] - 1231) < 1e-6 and abs(res["p99_us"] - 11071) < 1e-6, res
        # An error reply: redis-benchmark prints it and exits 1 before any result line.
        err = warn + "Error from server: ERR unknown command 'PING'\n"
        assert run.benchmark_kv(1, head, err) is None
        assert run.benchmark_kv(1, head + line, err) is None, "a non-zero exit is a failure"
        assert run.benchmark_kv(0, head, "") is None, "no result line is a failure"
        kv = run.benchmark_kv(0, head + line, "Error: Connection reset by peer\n")
        assert run.cmd_result(kv, 1)["errors"] == 1, kv

    @case
    def idle_goes_the_same_way_round_as_the_table():
        got = numbers(data(files))
        assert not {4.0, 2.0} & got, "idle ratio inverted against the table:\n%s" % files
        assert {400.0, 1600.0, 800.0} <= got or {0.25} <= got, \
            "idle RSS per connection not plotted:\n%s" % files

    @case
    def chart_says_what_was_run_where_and_when():
        text = "".join(files.values())
        today = datetime.datetime.now().strftime("%Y-%m-%d")
        assert today in text, "no date on the chart:\n%s" % text
        assert os.uname().nodename in text, "no machine on the chart:\n%s" % text
        assert "--quick" in text, "run kind not on the chart:\n%s" % text

    @case
    def chart_warns_that_quick_is_not_a_measurement_and_names_noise():
        text = files.get("varsfile", "")
        assert "NOT a measurement" in text, "no --quick warning:\n%s" % text
        assert re.search(r"noisy.*json 35%", text), "no noise warning for json:\n%s" % text

    print("1..%d" % len(cases), flush=True)
    failed = 0
    for i, fn in enumerate(cases, 1):
        try:
            fn()
        except Exception:  # noqa: BLE001 - any failure is a failed case
            failed += 1
            print("not ok %d - %s" % (i, fn.__name__))
            for line in traceback.format_exc().splitlines():
                print("# " + line)
        else:
            print("ok %d - %s" % (i, fn.__name__))
    shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
