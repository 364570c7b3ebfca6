#!/usr/bin/env python3
"""The live status page in a real browser: Debian's chromium, headless,
driven through chromium-driver and python3-selenium.  The status path
answers the page to the browser (it prefers text/html), the page polls the
JSON: a row per worker, the request counter moves under load, a reload
shows in the history.  A screenshot is kept in tests/artifacts/ of the
build directory.  SKIP without the browser (a failure in CI)."""
import os
import shutil
import signal
import sys
import time

from harness import Spindle, Tap, check, eq, free_port, need, sanitized, skip, wait_for
from httpclient import Conn

tap = Tap()
PORT = free_port()
S = None
ARTIFACTS = os.path.join(os.getcwd(), "tests", "artifacts")
SERVICES = """
[http main]
listen = 127.0.0.1:%d
status = /status
return /plaintext = 200 text/plain Hello, World!
""" % PORT


def webdriver():
    """selenium's webdriver module, or None.  Debian's python3-selenium is
    installed for the system's python3; a python3 of its own (pyenv, a
    virtual environment) finds it in the system's dist-packages too."""
    try:
        from selenium import webdriver as wd
        return wd
    except ImportError:
        pass
    system = "/usr/lib/python3/dist-packages"
    if os.path.isdir(os.path.join(system, "selenium")) and system not in sys.path:
        sys.path.append(system)
        try:
            from selenium import webdriver as wd
            return wd
        except ImportError:
            pass
    return None


def browser():
    if sanitized():
        skip("a browser test runs once, in the plain build, not again under the sanitizers")
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    need(chromium, "chromium is not installed (Debian package chromium)")
    need(driver, "chromedriver is not installed (Debian package chromium-driver)")
    wd = webdriver()
    need(wd, "selenium is not installed (Debian package python3-selenium)")
    from selenium.webdriver.chrome.service import Service
    opts = wd.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1100,800"):
        opts.add_argument(a)
    return wd.Chrome(service=Service(driver), options=opts)


def text(d, css):
    from selenium.webdriver.common.by import By
    return d.find_element(By.CSS_SELECTOR, css).text


def rows(d, table):
    from selenium.webdriver.common.by import By
    return d.find_elements(By.CSS_SELECTOR, "#%s tbody tr" % table)


def number(d, css):
    t = text(d, css)
    return int(t) if t.isdigit() else None


@tap.case
def the_page_renders_moves_and_shows_a_reload():
    d = browser()
    try:
        d.set_page_load_timeout(15)
        d.get("http://127.0.0.1:%d/status" % PORT)
        eq(d.title, "spindle status", "the HTML page, not the JSON")
        check(wait_for(lambda: len(rows(d, "workers")) == 2, 10, 0.1),
              "a row per worker: %r" % [r.text for r in rows(d, "workers")])
        pids = sorted(int(r.find_elements("css selector", "td")[1].text)
                      for r in rows(d, "workers"))
        eq(pids, sorted(S.workers()), "the workers' pids")
        before = wait_for(lambda: number(d, "#total-requests"), 10, 0.1)
        check(before is not None, "a request count")

        for _ in range(50):
            with Conn(PORT) as c:
                eq(c.request("GET", "/plaintext").status, 200, "answered")
        moved = wait_for(lambda: (number(d, "#total-requests") or 0) >= before + 50, 10, 0.1)
        check(moved, "requests moved from %d: %r" % (before, text(d, "#total-requests")))
        check(wait_for(lambda: len(d.find_element("id", "rps-line").get_attribute("points")
                                   .split()) >= 2, 10, 0.1), "the sparkline has points")

        S.signal(signal.SIGHUP)
        def reload_row():
            for r in rows(d, "reloads"):
                if r.get_attribute("data-generation") == "2" and "ok: reloaded" in r.text:
                    return r
            return None
        check(wait_for(reload_row, 15, 0.2), "the reload in the history: %r" %
              [r.text for r in rows(d, "reloads")])
        check(wait_for(lambda: text(d, "#generation") == "2", 10, 0.1), "generation 2 shown")
        check(wait_for(lambda: len(rows(d, "workers")) == 2, 10, 0.1), "still a row per worker")
        eq(text(d, "#error"), "", "every poll answered")
        os.makedirs(ARTIFACTS, exist_ok=True)
        shot = os.path.join(ARTIFACTS, "status-page.png")
        check(d.save_screenshot(shot), "screenshot saved")
        check(os.path.getsize(shot) > 1000, "screenshot %s" % shot)
        print("# screenshot: %s" % shot)
    finally:
        d.quit()


@tap.case
def stop():
    S.stop()
    check(not S.workers(), "workers gone")


def setup():
    global S
    S = Spindle(SERVICES, workers=2)
    S.start(ports=[PORT])
    S.wait_ready(2)


setup()
tap.run()
