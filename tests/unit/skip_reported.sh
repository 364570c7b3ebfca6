#!/bin/sh
# A unit test case that skips is counted as SKIP, not as a failure or a pass:
# test_config's test_example skips without SPINDLE_SRCDIR, and the wrapper that
# `make check` runs unit tests through must report it as "ok N - ... # SKIP why".
srcdir=${SPINDLE_SRCDIR:-.}
echo "1..2"
out=$(env -u SPINDLE_SRCDIR CMOCKA_MESSAGE_OUTPUT=TAP \
    ${SHELL:-/bin/sh} "$srcdir/tests/unit/cmocka-tap.sh" tests/unit/test_config 2>&1)
rc=$?
printf '%s\n' "$out" | sed 's/^/# /'
if printf '%s\n' "$out" | grep -q '^ok [0-9]* - test_example # SKIP SPINDLE_SRCDIR is not set$'; then
    echo "ok 1 - a skipped case reads as ok, with the SKIP directive and its reason"
else
    echo "not ok 1 - a skipped case reads as ok, with the SKIP directive and its reason"
fi
if [ "$rc" -eq 0 ] && ! printf '%s\n' "$out" | grep -q '^not ok'; then
    echo "ok 2 - no case fails and the program exits 0"
else
    echo "not ok 2 - no case fails and the program exits 0 (exit $rc)"
fi
