#!/usr/bin/env python3
"""The metrics page (metrics = PATH): Prometheus's text format, answered by
any worker for every worker from the counters the master shares with them.
Known traffic is counted exactly; every line parses; histograms are
cumulative with +Inf == count; a worker killed with SIGKILL and a reload
(SIGHUP, and one that fails) keep every _total counter and count
themselves; the JSON status page carries the same totals and the reload
history.  Then Debian's prometheus scrapes it and reads the same numbers."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from harness import Spindle, Tap, check, eq, free_port, need, wait_for
from httpclient import Conn

tap = Tap()
PORT = free_port()   # [http main]: the traffic counted, and the status page
MPORT = free_port()  # [http scrape]: the metrics page
S = None
SENT = 0             # requests answered by [http main] so far
SERVICES = """
[http main]
listen = 127.0.0.1:%d
status = /status
return /plaintext = 200 text/plain Hello, World!

[http scrape]
listen = 127.0.0.1:%d
metrics = /metrics
""" % (PORT, MPORT)

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (-?[0-9.e+]+|\+Inf|NaN)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def parse(text):
    """Every line of the page: returns {(name, frozenset(labels)): value}
    and {family: type}, failing on any line that is not HELP, TYPE or a
    sample of the family declared just before it (a family's lines stay
    together, as the text format requires)."""
    samples, types, helps = {}, {}, set()
    current = None
    check(text.endswith("\n"), "page ends with a newline")
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            check(name not in helps, "one HELP for %s" % name)
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            eq(len(parts), 4, "TYPE line %r" % line)
            check(parts[3] in ("counter", "gauge", "histogram"), "type in %r" % line)
            check(parts[2] not in types, "one TYPE for %s" % parts[2])
            types[parts[2]] = parts[3]
            current = parts[2]
            continue
        m = SAMPLE.match(line)
        check(m, "sample line %r" % line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        pairs = LABEL.findall(labels)
        eq(",".join('%s="%s"' % (k, v) for k, v, _ in pairs), labels, "labels of %r" % line)
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        check(fam in types, "TYPE before %r" % line)
        eq(fam, current, "family of %r (its lines together)" % line)
        if types[fam] == "counter":
            check(name.endswith("_total"), "counter %s ends in _total" % name)
        key = (name, frozenset((k, v) for k, v, _ in pairs))
        check(key not in samples, "one sample per series: %r" % line)
        samples[key] = float(value)
    return samples, types


def value(samples, name, **labels):
    """Sum of the samples of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def per_worker(samples, name):
    return {dict(ls)["worker"]: v for (n, ls), v in samples.items() if n == name}


def check_histograms(samples):
    """Buckets cumulative in le order, +Inf == _count, per series."""
    series = {}
    for (n, ls), v in samples.items():
        if n == "spindle_request_duration_seconds_bucket":
            d = dict(ls)
            le = d.pop("le")
            series.setdefault(frozenset(d.items()), []).append(
                (float("inf") if le == "+Inf" else float(le), v))
    check(series, "histogram series present")
    for key, buckets in series.items():
        buckets.sort()
        counts = [c for _, c in buckets]
        eq(counts, sorted(counts), "buckets of %r monotone" % dict(key))
        eq(buckets[-1][0], float("inf"), "+Inf bucket")
        eq(buckets[-1][1], samples[("spindle_request_duration_seconds_count", key)],
           "+Inf == count for %r" % dict(key))
        check(("spindle_request_duration_seconds_sum", key) in samples, "sum for %r" % dict(key))


def scrape():
    with Conn(MPORT) as c:
        r = c.request("GET", "/metrics")
    eq(r.status, 200, "metrics status")
    eq(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8", "content type")
    return parse(r.body.decode())[0]


def status():
    with Conn(PORT) as c:
        r = c.request("GET", "/status")
    eq(r.status, 200, "status page")
    return json.loads(r.body)


def send(n, path="/plaintext"):
    """n requests to [http main], each on its own connection so that both
    workers get some; counted in SENT."""
    global SENT
    for _ in range(n):
        with Conn(PORT) as c:
            r = c.request("GET", path)
            check(r.status in (200, 404), "answered: %r" % r)
        SENT += 1


def main_requests(samples):
    return value(samples, "spindle_request_duration_seconds_count", service="main")


def wait_main(want):
    """The counts of a request are added once it is written: the client may
    read the answer first.  Wait for them, then return the page."""
    got = wait_for(lambda: (lambda s: s if main_requests(s) == want else None)(scrape()), 5)
    check(got, "[http main] counted %d requests: %r" % (want, main_requests(scrape())))
    return got


def monotone(before, after, what):
    """Every _total counter and histogram sample of before is in after, and
    not smaller."""
    for (n, ls), v in before.items():
        if n.endswith("_total") or n.startswith("spindle_request_duration_seconds"):
            check((n, ls) in after, "%s %r still there after %s" % (n, dict(ls), what))
            check(after[(n, ls)] >= v, "%s %r went down after %s: %r -> %r" %
                  (n, dict(ls), what, v, after[(n, ls)]))


@tap.case
def bad_metrics_paths_are_rejected():
    for section, why in (("metrics = nope\n", "invalid metrics 'nope'"),
                         ("metrics = /x\nstatus = /x\n", "one path '/x'"),
                         ("metrics = /x\nreturn /x = 200 text/plain y\n",
                          "return path '/x' is also the metrics path")):
        d = tempfile.mkdtemp(prefix="spindle-test-")
        try:
            conf = os.path.join(d, "bad.conf")
            with open(conf, "w") as f:
                f.write("[http bad]\nlisten = 127.0.0.1:%d\n%s" % (free_port(), section))
            r = subprocess.run([S.bin, "-c", conf, "-t"], capture_output=True, text=True,
                               timeout=10)
            check(r.returncode == 1 and why in r.stderr, "%r: %s" % (section, r.stderr))
        finally:
            shutil.rmtree(d, ignore_errors=True)


@tap.case
def known_traffic_is_counted_for_every_worker():
    S.wait_ready(2)
    send(200)
    send(10, "/missing")
    s = wait_main(SENT)
    check_histograms(s)
    workers = per_worker(s, "spindle_requests_total")
    eq(sorted(workers), ["0", "1"], "a series per worker")
    check(all(v > 0 for v in workers.values()), "both workers served: %r" % workers)
    # Every request of either service, in the same snapshot as the histograms.
    eq(value(s, "spindle_requests_total"),
       SENT + value(s, "spindle_request_duration_seconds_count", service="scrape"),
       "requests_total is the sum of the services' counts")
    eq(value(s, "spindle_http_errors_total", service="main", **{"class": "4xx"}), 10, "404s")
    eq(value(s, "spindle_http_errors_total", service="main", **{"class": "5xx"}), 0, "no 5xx")
    check(value(s, "spindle_connections_accepted_total") >= SENT, "accepted")
    check(value(s, "spindle_bytes_sent_total") > 200 * 13, "bytes sent")
    check(value(s, "spindle_bytes_received_total") > 200 * 20, "bytes received")
    # This scrape's own connection is open in some worker.
    check(value(s, "spindle_connections") >= 1, "connections gauge")
    eq(value(s, "spindle_up"), 1, "up")
    eq(value(s, "spindle_generation"), 1, "generation")
    eq(value(s, "spindle_worker_respawns_total"), 0, "no respawns")
    eq(value(s, "spindle_reloads_total"), 0, "no reloads")
    check(abs(value(s, "spindle_start_time_seconds") - time.time()) < 60, "start time")
    # A quick local answer falls in the first bucket.
    check(value(s, "spindle_request_duration_seconds_bucket", service="main", le="0.1") >= 200,
          "plain answers take under 100 ms")


@tap.case
def status_page_has_the_same_totals():
    global SENT
    s = wait_main(SENT)
    st = status()
    SENT += 1  # the status request is [http main]'s
    for k in ("pid", "generation", "index", "requests"):
        check(k in st, "the worker's own %s is still there" % k)
    t = st["totals"]
    # Scrapes are counted once answered, maybe after the status page read.
    check(0 <= t["requests"] - value(s, "spindle_requests_total") <= 3,
          "totals.requests %r vs metrics %r" % (t["requests"], value(s, "spindle_requests_total")))
    eq(t["generation"], 1, "totals.generation")
    eq([w["index"] for w in st["workers"]], [0, 1], "a record per worker index")
    eq(sorted(w["pid"] for w in st["workers"]), sorted(S.workers()), "the workers' pids")
    eq(sum(w["requests"] for w in st["workers"]), t["requests"], "workers sum to totals")
    eq(st["reloads"], [], "no reloads yet")


@tap.case
def sigkill_keeps_the_totals_and_counts_the_respawn():
    global SENT
    victim = next(w for w in status()["workers"] if w["index"] == 1)
    SENT += 1
    before = wait_main(SENT)
    os.kill(victim["pid"], signal.SIGKILL)
    S.wait_workers(2, timeout=10, exclude=(victim["pid"],))
    S.wait_ready(2)
    send(20)
    after = wait_main(SENT)
    monotone(before, after, "SIGKILL")
    eq(per_worker(after, "spindle_worker_respawns_total"), {"0": 0, "1": 1}, "respawns")
    check(per_worker(after, "spindle_requests_total")["1"] >=
          per_worker(before, "spindle_requests_total")["1"], "the killed index keeps its count")
    check_histograms(after)


@tap.case
def reloads_keep_the_totals_and_are_recorded():
    global SENT
    before = wait_main(SENT)
    S.signal(signal.SIGHUP)
    check(S.wait_log(r"reload: reloaded: generation 2"), "reloaded:\n" + S.logs())
    s = wait_for(lambda: (lambda s: s if value(s, "spindle_reloads_total", result="ok") == 1
                          else None)(scrape()), 5)
    check(s, "reloads_total{result=ok} == 1")
    eq(value(s, "spindle_generation"), 2, "generation 2")
    S.wait_ready(2)
    send(20)
    after = wait_main(SENT)
    monotone(before, after, "a reload")
    check(set(per_worker(after, "spindle_worker_generation").values()) == {2},
          "the workers run generation 2")

    # A reload that fails is counted and recorded with its reason.
    good = open(S.conf).read()
    with open(S.conf, "w") as f:
        f.write(good + "\n[http main]\nbogus = 1\n")
    rc, out = S.ctl("reload")
    check(rc != 0, "bad configuration rejected: %s" % out)
    with open(S.conf, "w") as f:
        f.write(good)
    s = scrape()
    eq(value(s, "spindle_reloads_total", result="failed"), 1, "failed reload counted")
    eq(value(s, "spindle_reloads_total", result="ok"), 1, "ok reloads unchanged")
    monotone(after, s, "a failed reload")
    st = status()
    SENT += 1
    eq([(r["generation"], r["ok"]) for r in st["reloads"]], [(2, True), (2, False)],
       "reload history: %r" % st["reloads"])
    check("reloaded: generation 2" in st["reloads"][0]["reason"], "ok reason")
    check("configuration rejected" in st["reloads"][1]["reason"], "failed reason")
    check(abs(st["reloads"][1]["time"] - time.time()) < 60, "reload time")
    eq((st["totals"]["reloads_ok"], st["totals"]["reloads_failed"]), (1, 1), "totals' reloads")
    eq(st["totals"]["respawns"], 1, "totals' respawns")


def api(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
        return json.loads(r.read())


def query(port, q):
    d = api(port, "/api/v1/query?query=" + urllib.parse.quote(q))
    eq(d["status"], "success", "query %s" % q)
    res = d["data"]["result"]
    return float(res[0]["value"][1]) if res else None


@tap.case
def prometheus_scrapes_the_same_numbers():
    prom = shutil.which("prometheus")
    need(prom, "prometheus is not installed (Debian package prometheus)")
    wait_main(SENT)
    d = tempfile.mkdtemp(prefix="spindle-test-prom-")
    pport = free_port()
    with open(os.path.join(d, "prometheus.yml"), "w") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: spindle\n    metrics_path: /metrics\n"
                "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % MPORT)
    log = open(os.path.join(d, "prometheus.log"), "wb")
    p = subprocess.Popen([prom, "--config.file=" + os.path.join(d, "prometheus.yml"),
                          "--web.listen-address=127.0.0.1:%d" % pport,
                          "--storage.tsdb.path=" + os.path.join(d, "data")],
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=d)
    try:
        def ready():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % pport, timeout=1):
                    return True
            except OSError:
                return False
        check(wait_for(ready, 30, 0.2), "prometheus ready")
        main = 'sum(spindle_request_duration_seconds_count{service="main"})'
        got = wait_for(lambda: query(pport, main) == SENT, 30, 0.5)
        check(got, "prometheus read %r requests of [http main], sent %d" %
              (query(pport, main), SENT))
        # spindle_requests_total counts the scrapes too, as the scrape
        # service's histogram does, in the same sample.
        total = query(pport, "sum(spindle_requests_total) - "
                      'sum(spindle_request_duration_seconds_count{service="scrape"})')
        eq(total, SENT, "sum(spindle_requests_total) less the scrapes")
        check(query(pport, "sum(spindle_requests_total)") > SENT, "sum(spindle_requests_total)")
        eq(query(pport, 'sum(spindle_worker_respawns_total)'), 1, "respawns")
        eq(query(pport, 'spindle_reloads_total{result="ok"}'), 1, "reloads")
        targets = api(pport, "/api/v1/targets")["data"]["activeTargets"]
        eq([(t["scrapeUrl"], t["health"]) for t in targets],
           [("http://127.0.0.1:%d/metrics" % MPORT, "up")], "target up: %r" %
           [t.get("lastError") for t in targets])
    except Exception:
        log.flush()
        with open(os.path.join(d, "prometheus.log"), errors="replace") as f:
            print("# prometheus log:\n# " + f.read()[-3000:].replace("\n", "\n# "))
        raise
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()
        shutil.rmtree(d, ignore_errors=True)


@tap.case
def metrics_page_stops_with_the_server():
    S.stop()
    check(not S.workers(), "workers gone")


def setup():
    global S
    S = Spindle(SERVICES, workers=2)
    S.start(ports=[PORT, MPORT])


setup()
tap.run()
