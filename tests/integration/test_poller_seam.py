"""The scheduler reaches the kernel's readiness interface only through the
poller backend: no source file but shared/runtime/poller_epoll.c names an epoll call
or includes its header, so another backend replaces one file."""
import os
import re

from harness import SRCDIR, Tap, check

tap = Tap()
EPOLL = re.compile(r"\bepoll_(create1?|ctl|wait|pwait2?)\b|<sys/epoll\.h>")
BACKEND = os.path.join("shared", "runtime", "poller_epoll.c")


@tap.case
def only_the_poller_backend_calls_epoll():
    offenders = []
    for top in ("shared", "worker", "master"):
        for dirpath, _, files in os.walk(os.path.join(SRCDIR, top)):
            for name in files:
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, SRCDIR)
                if rel == BACKEND:
                    continue
                with open(path, encoding="utf-8", errors="replace") as f:
                    for i, line in enumerate(f, 1):
                        code = line.split("//")[0]
                        if EPOLL.search(code) and not code.lstrip().startswith("*"):
                            offenders.append("%s:%d: %s" % (rel, i, line.strip()))
    check(not offenders, "epoll outside the poller backend:\n" + "\n".join(offenders))


@tap.case
def the_backend_implements_every_operation():
    with open(os.path.join(SRCDIR, "shared", "runtime", "poller.h")) as f:
        ops = set(re.findall(r"\b(sp__poller_\w+)\(", f.read()))
    with open(os.path.join(SRCDIR, BACKEND)) as f:
        src = f.read()
    missing = [op for op in sorted(ops) if not re.search(r"^\S.*\b%s\(" % op, src, re.M)]
    check(len(ops) >= 8 and not missing, "ops %s, missing %s" % (sorted(ops), missing))


tap.run()
