#!/bin/sh
# Stands in for the unit tests when configure found no cmocka (or was given
# --without-cmocka): each unit test program is reported as skipped, with the
# reason, so that `make check` says what it did not run.
# SPINDLE_UNIT_TESTS and SPINDLE_UNIT_SKIP come from the Makefile.
set -f
n=0
for t in $SPINDLE_UNIT_TESTS; do n=$((n + 1)); done
echo "1..$n"
i=0
for t in $SPINDLE_UNIT_TESTS; do
    i=$((i + 1))
    echo "ok $i - $t # SKIP ${SPINDLE_UNIT_SKIP:-cmocka not found}"
done
