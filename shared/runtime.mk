# The runtime: fibers, timers, IOManager, fiber I/O, network helpers.

shared_libspindle_a_SOURCES += \
	shared/internal.h \
	shared/include/spindle/fiber.h \
	shared/include/spindle/timer.h \
	shared/include/spindle/iomanager.h \
	shared/include/spindle/waitq.h \
	shared/include/spindle/io.h \
	shared/include/spindle/stream.h \
	shared/include/spindle/net.h \
	shared/fiber.c \
	shared/timer.c \
	shared/iomanager.c \
	shared/poller.h \
	shared/io.c \
	shared/stream.c \
	shared/net.c \
	shared/log.c \
	shared/include/spindle/log.h

# The poller backend is compiled as part of iomanager.c (see there).
EXTRA_DIST += shared/poller_epoll.c

if FIBER_X86_64
shared_libspindle_a_SOURCES += shared/fiber_x86_64.S
endif
if FIBER_AARCH64
shared_libspindle_a_SOURCES += shared/fiber_aarch64.S
endif

CMOCKA_TESTS += \
	tests/unit/test_fiber \
	tests/unit/test_timer \
	tests/unit/test_iomanager \
	tests/unit/test_iomanager_mt \
	tests/unit/test_io \
	tests/unit/test_stream \
	tests/unit/test_waitq
if HAVE_CMOCKA
check_PROGRAMS += \
	tests/unit/test_fiber \
	tests/unit/test_timer \
	tests/unit/test_iomanager \
	tests/unit/test_iomanager_mt \
	tests/unit/test_io \
	tests/unit/test_stream \
	tests/unit/test_waitq
endif
EXTRA_DIST += tests/unit/runtime_test.h
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

# The scheduler reaches epoll only through the poller backend.
INTEGRATION_TESTS += tests/integration/test_poller_seam.py
