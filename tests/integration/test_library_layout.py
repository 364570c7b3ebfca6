#!/usr/bin/env python3
"""shared/ is five libraries the build keeps apart: the runtime, the HTTP
protocol, the RESP protocol, the configuration and the control channel.  Each
uses only the libraries it is allowed to (the HTTP and RESP libraries and the
channel use none, so a proxy, a test or a fuzzer links them alone), and each library's sources
include only the headers of the libraries it may use."""
import os
import re
import subprocess

from harness import SRCDIR, Tap, check, eq

tap = Tap()
BUILDDIR = os.path.dirname(os.environ.get("SPINDLE_BIN", os.path.join(SRCDIR, "spindle")))
LIBS = {
    "runtime": [],
    "http": [],
    "resp": [],
    "channel": [],
    "config": ["runtime"],
}


def archive(lib):
    return os.path.join(BUILDDIR, "shared", lib, "libspindle-%s.a" % lib)


def symbols(lib, flag):
    """Names of the global symbols of lib's archive: defined (flag
    --defined-only) or undefined (--undefined-only)."""
    out = subprocess.run(["nm", "-g", flag, archive(lib)], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and not line.endswith(":"):
            names.add(parts[-1])
    return names


def own(names):
    """The names a library owns: its sp_ prefix.  The runtime also defines
    libc's read(), close(), poll() ... (shared/runtime/hook.c), which the
    others still call as libc's."""
    return {n for n in names if n.startswith("sp_")}


@tap.case
def each_library_uses_only_those_it_may():
    defined = {lib: own(symbols(lib, "--defined-only")) for lib in LIBS}
    for lib, allowed in LIBS.items():
        used = symbols(lib, "--undefined-only") - defined[lib]
        for other in LIBS:
            if other == lib or other in allowed:
                continue
            eq(sorted(used & defined[other]), [],
               "symbols of libspindle-%s used by libspindle-%s" % (other, lib))


@tap.case
def each_library_includes_only_headers_it_may():
    owner = {}
    for lib in LIBS:
        inc = os.path.join(SRCDIR, "shared", lib, "include", "spindle")
        for name in os.listdir(inc):
            owner["spindle/" + name] = lib
    bad = []
    for lib, allowed in LIBS.items():
        top = os.path.join(SRCDIR, "shared", lib)
        for dirpath, _, files in os.walk(top):
            for name in files:
                if not name.endswith((".c", ".h")):
                    continue
                path = os.path.join(dirpath, name)
                with open(path, encoding="utf-8") as f:
                    for i, line in enumerate(f, 1):
                        m = re.match(r'\s*#\s*include\s+"(spindle/[^"]+)"', line)
                        if m and owner.get(m.group(1), lib) not in [lib] + allowed:
                            bad.append("%s:%d: %s" % (os.path.relpath(path, SRCDIR), i,
                                                      m.group(1)))
    eq(bad, [], "includes of another library's header")
    check(len(owner) >= 10, "public headers found: %d" % len(owner))


tap.run()
