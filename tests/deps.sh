#!/bin/sh
# Installs the Debian packages spindle needs (only the missing ones).
#   tests/deps.sh          build, run and test
#   tests/deps.sh --bench  also the benchmark baselines and load generators
#   tests/deps.sh --all    also fuzzing (clang) and valgrind
set -e
# test_install.py builds against the installed SDK (pkg-config) and renders the man
# pages (groff-base); it checks the systemd unit where systemd-analyze is found.
# libcurl4-openssl-dev: the system call hooks' test module (tests/modules/blocking_client.c);
# libhiredis-dev, redis-server, redis-tools: the RESP tests.  libssl-dev: HTTPS (and
# the openssl command the TLS tests make certificates with).
# nginx-light, gunicorn, python3-websockets: upstreams and clients of the reverse proxy's tests.
# haproxy: the PROXY protocol and drain test in front of two instances; prometheus: the
# metrics page scraped; chromium, chromium-driver, python3-selenium: the live status page.
pkgs="build-essential autoconf automake libtool pkg-config libjemalloc-dev libcmocka-dev
      python3 curl procps iproute2 media-types groff-base libcurl4-openssl-dev libhiredis-dev
      redis-server redis-tools libssl-dev openssl nginx-light gunicorn python3-websockets
      haproxy prometheus chromium chromium-driver python3-selenium"
case "${1:-}" in
--bench) pkgs="$pkgs libevent-dev wrk gnuplot-nox" ;;
--all) pkgs="$pkgs libevent-dev wrk gnuplot-nox clang libclang-rt-14-dev valgrind clang-format git" ;;
esac
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing packages:$missing (run as root, or install them)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
