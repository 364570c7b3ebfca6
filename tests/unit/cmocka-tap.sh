#!/bin/sh
# Runs a unit test and rewrites its TAP so that automake's tap-driver counts a
# skipped case as SKIP.  cmocka (1.1.5) reports skip() as "not ok N # SKIP name",
# which the driver counts as a failure; this prints "ok N - name # SKIP reason",
# the reason being the last "# skipped: ..." line the case printed (SKIP() in
# runtime_test.h).  Every other line, and the test's exit status, pass through.
#
# usage: cmocka-tap.sh [runner...] program [args...]   (runner: e.g. valgrind)

status=$(mktemp) || exit 99
trap 'rm -f "$status"' EXIT
{
    "$@"
    echo $? >"$status"
} | awk '
/^# skipped: / { reason = substr($0, 12); print; next }
/^(not )?ok [0-9]+ # SKIP/ {
    n = $0
    sub(/^(not )?ok /, "", n)
    name = n
    sub(/ .*/, "", n)
    sub(/^[0-9]+ # SKIP ?/, "", name)
    printf "ok %s - %s # SKIP %s\n", n, name, (reason != "" ? reason : "skipped")
    reason = ""
    fflush()
    next
}
/^(not )?ok / { reason = "" }
{ print; fflush() }
'
rc=$(cat "$status")
exit "${rc:-99}"
