#!/bin/sh
# Copies the benchmark programs and every shared library they load (the dynamic loader
# too) into one folder, for `bench/run --bin-dir DIR` on a machine with no packages:
#
#   bench/pack-static.sh OUTDIR [BUILDDIR]
#
# OUTDIR/bin gets spindle, ev_http, ev_echo, epoll_srv, echo_load, idle_conns (from BUILDDIR, default
# bench/.run/build, as bench/run builds it) and wrk, nginx (from PATH); OUTDIR/lib gets the
# libraries `ldd` lists and the loader. bench/run then starts each program as
#   OUTDIR/lib/ld-linux-x86-64.so.2 --library-path OUTDIR/lib OUTDIR/bin/PROG ...
# A program that is missing is reported and left out (spindle: bench/run then needs
# --allow-missing-spindle).
set -eu

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    echo "usage: $0 OUTDIR [BUILDDIR]" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
out=$1
build=${2:-$here/.run/build}
mkdir -p "$out/bin" "$out/lib"

missing=0
add() { # name path
    if [ -z "$2" ] || [ ! -x "$2" ]; then
        echo "pack-static: $1 not found, left out" >&2
        missing=1
        return 0
    fi
    cp -fL "$2" "$out/bin/$1"
    ldd "$2" | awk '
        $2 == "=>" && $3 ~ /^\// { print $3 }
        $1 ~ /^\// { print $1 }' |
    while read -r lib; do
        cp -fL "$lib" "$out/lib/$(basename "$lib")"
    done
}

add spindle "$build/spindle"
add ev_http "$build/bench/baseline/ev_http"
add ev_echo "$build/bench/baseline/ev_echo"
add epoll_srv "$build/bench/baseline/epoll_srv"
add echo_load "$build/bench/load/echo_load"
add idle_conns "$build/bench/load/idle_conns"
add wrk "$(command -v wrk || true)"
add nginx "$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || true)"

loader=$(ls "$out"/lib/ld-linux-* 2>/dev/null | head -n 1)
if [ -z "$loader" ]; then
    echo "pack-static: no dynamic loader found in ldd's output" >&2
    exit 1
fi
# Smoke test: the packed wrk must start through the packed loader.
if [ -x "$out/bin/wrk" ] &&
    ! "$loader" --library-path "$out/lib" "$out/bin/wrk" --version >/dev/null 2>&1 &&
    ! "$loader" --library-path "$out/lib" "$out/bin/wrk" --version 2>&1 | grep -q '^wrk'; then
    echo "pack-static: the packed wrk does not start" >&2
    exit 1
fi
echo "pack-static: $(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries," \
    "$(du -sh "$out" | cut -f1) in $out"
exit $missing
