/*
 * Skipping a unit test case.  cmocka's skip() alone reads as a failure to
 * automake's TAP driver; tests/unit/cmocka-tap.sh, through which `make check`
 * runs every unit test, turns it into "ok N - name # SKIP why".
 */
#ifndef SPINDLE_SKIP_H
#define SPINDLE_SKIP_H

/* Ends the running case as skipped, saying why; never returns. */
#define SKIP(why)                                                                                  \
    do {                                                                                           \
        print_message("# skipped: %s\n", (why));                                                   \
        skip();                                                                                    \
    } while (0)

#endif
