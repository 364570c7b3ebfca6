/*
 * What every fuzz target shares: the entry point libFuzzer (or replay.c)
 * calls, and CHECK, which turns a broken invariant into a crash the fuzzer
 * reports with its input.
 */
#ifndef SPINDLE_FUZZ_H
#define SPINDLE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #c);              \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
