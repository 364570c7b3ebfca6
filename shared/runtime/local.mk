# shared/runtime/local.mk
# libspindle-runtime: fibers, the clock and timers, the scheduler (IOManager)
# and its poller backend, fiber I/O, streams, network helpers, the error log.
# Needs no other spindle library.

noinst_LIBRARIES += shared/runtime/libspindle-runtime.a
shared_runtime_libspindle_runtime_a_CPPFLAGS = -I$(top_builddir) $(SP_RUNTIME_CPPFLAGS)
shared_runtime_libspindle_runtime_a_SOURCES = \
	shared/runtime/internal.h \
	shared/runtime/include/spindle/clock.h \
	shared/runtime/include/spindle/fiber.h \
	shared/runtime/include/spindle/timer.h \
	shared/runtime/include/spindle/iomanager.h \
	shared/runtime/include/spindle/waitq.h \
	shared/runtime/include/spindle/io.h \
	shared/runtime/include/spindle/stream.h \
	shared/runtime/include/spindle/net.h \
	shared/runtime/include/spindle/log.h \
	shared/runtime/include/spindle/hook.h \
	shared/runtime/include/spindle/proxy_proto.h \
	shared/runtime/clock.c \
	shared/runtime/fiber.c \
	shared/runtime/timer.c \
	shared/runtime/iomanager.c \
	shared/runtime/poller.h \
	shared/runtime/io.c \
	shared/runtime/hook.c \
	shared/runtime/hook_libc.c \
	shared/runtime/stream.c \
	shared/runtime/net.c \
	shared/runtime/log.c \
	shared/runtime/proxy_proto.c

# The poller backend is compiled as part of iomanager.c (see there).
EXTRA_DIST += shared/runtime/poller_epoll.c

if FIBER_X86_64
shared_runtime_libspindle_runtime_a_SOURCES += shared/runtime/fiber_x86_64.S
endif
if FIBER_AARCH64
shared_runtime_libspindle_runtime_a_SOURCES += shared/runtime/fiber_aarch64.S
endif

CMOCKA_TESTS += \
	tests/unit/test_clock \
	tests/unit/test_fiber \
	tests/unit/test_timer \
	tests/unit/test_iomanager \
	tests/unit/test_iomanager_mt \
	tests/unit/test_io \
	tests/unit/test_stream \
	tests/unit/test_waitq \
	tests/unit/test_hook \
	tests/unit/test_proxy_proto
if HAVE_CMOCKA
check_PROGRAMS += \
	tests/unit/test_clock \
	tests/unit/test_fiber \
	tests/unit/test_timer \
	tests/unit/test_iomanager \
	tests/unit/test_iomanager_mt \
	tests/unit/test_io \
	tests/unit/test_stream \
	tests/unit/test_waitq \
	tests/unit/test_hook \
	tests/unit/test_proxy_proto
endif
EXTRA_DIST += tests/unit/runtime_test.h
tests_unit_test_clock_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_clock_LDADD = $(UNIT_LDADD)
tests_unit_test_fiber_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_fiber_LDADD = $(UNIT_LDADD) -lm
tests_unit_test_timer_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_timer_LDADD = $(UNIT_LDADD)
tests_unit_test_iomanager_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_iomanager_LDADD = $(UNIT_LDADD)
tests_unit_test_iomanager_mt_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_iomanager_mt_LDADD = $(UNIT_LDADD)
tests_unit_test_io_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_io_LDADD = $(UNIT_LDADD)
tests_unit_test_stream_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_stream_LDADD = $(UNIT_LDADD)
tests_unit_test_waitq_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_waitq_LDADD = $(UNIT_LDADD)
tests_unit_test_hook_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_hook_LDADD = $(UNIT_LDADD)
tests_unit_test_proxy_proto_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_proxy_proto_LDADD = $(UNIT_LDADD)

# The scheduler reaches epoll only through the poller backend.
INTEGRATION_TESTS += tests/integration/test_poller_seam.py
