# shared/resp/local.mk
# libspindle-resp: RESP2, the protocol Redis clients speak, with no I/O: the
# command parser and the reply builders.  It includes no other spindle header
# (the build gives it only its own include folder), so a service, a test or a
# fuzzer can use it alone.

noinst_LIBRARIES += shared/resp/libspindle-resp.a
shared_resp_libspindle_resp_a_CPPFLAGS = -I$(top_builddir) $(SP_RESP_CPPFLAGS)
shared_resp_libspindle_resp_a_SOURCES = \
	shared/resp/include/spindle/resp.h \
	shared/resp/resp.c \
	shared/resp/resp_out.c

CMOCKA_TESTS += tests/unit/test_resp
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_resp
endif
tests_unit_test_resp_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_resp_LDADD = shared/resp/libspindle-resp.a $(CMOCKA_LIBS)
