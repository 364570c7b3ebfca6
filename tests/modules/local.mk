# tests/modules/local.mk: the test modules, shared objects the workers open
# (spindle/module.h), built by make check from one source, one variant per
# -D (tests/modules/echo_upper.c says which).  A plain rule: automake builds
# shared objects only through libtool, which spindle does not use.

TEST_MODULES = \
	tests/modules/echo_upper_v1.so \
	tests/modules/echo_upper_v2.so \
	tests/modules/init_fail.so \
	tests/modules/init_segv.so \
	tests/modules/init_hang.so \
	tests/modules/bad_api.so \
	tests/modules/no_symbol.so \
	tests/modules/load_hang.so \
	tests/modules/load_segv.so \
	tests/modules/no_service.so
# The system call hooks' modules (tests/integration/test_hooks_curl.py): one
# source, two variants; curl_fetch.so links libcurl.
TEST_MODULES += tests/modules/slow.so
if HAVE_LIBCURL
TEST_MODULES += tests/modules/curl_fetch.so
endif
EXTRA_DIST += tests/modules/blocking_client.c
check_DATA = $(TEST_MODULES) examples/hello/hello.so examples/upper/upper.so $(BENCH_MODULES)
CLEANFILES += $(TEST_MODULES)
EXTRA_DIST += tests/modules/echo_upper.c
AM_TESTS_ENVIRONMENT += SPINDLE_MODULES=$(abs_top_builddir)/tests/modules; export SPINDLE_MODULES;

TEST_MODULE_SRC = $(srcdir)/tests/modules/echo_upper.c
TEST_MODULE_CC = $(AM_V_CC)$(MKDIR_P) tests/modules && \
	$(CC) -std=gnu11 -Wall -Wextra $(WERROR_CFLAGS) $(CFLAGS) -shared -fPIC \
	$(SP_RUNTIME_CPPFLAGS) $(SP_HTTP_CPPFLAGS) $(SP_CONFIG_CPPFLAGS) $(SP_WORKER_CPPFLAGS)

tests/modules/echo_upper_v1.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_VERSION=1 -o $@ $(TEST_MODULE_SRC)
tests/modules/echo_upper_v2.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_VERSION=2 -o $@ $(TEST_MODULE_SRC)
tests/modules/init_fail.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_INIT_FAIL -o $@ $(TEST_MODULE_SRC)
tests/modules/init_segv.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_INIT_SEGV -o $@ $(TEST_MODULE_SRC)
tests/modules/init_hang.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_INIT_HANG -o $@ $(TEST_MODULE_SRC)
tests/modules/bad_api.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_BAD_API -o $@ $(TEST_MODULE_SRC)
tests/modules/no_symbol.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_NO_SYMBOL -o $@ $(TEST_MODULE_SRC)
tests/modules/load_hang.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_LOAD_HANG -o $@ $(TEST_MODULE_SRC)
tests/modules/load_segv.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_LOAD_SEGV -o $@ $(TEST_MODULE_SRC)
tests/modules/no_service.so: tests/modules/echo_upper.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_NO_SERVICE -o $@ $(TEST_MODULE_SRC)

BLOCKING_MODULE_SRC = $(srcdir)/tests/modules/blocking_client.c
tests/modules/slow.so: tests/modules/blocking_client.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) -DMOD_SLOW -o $@ $(BLOCKING_MODULE_SRC)
tests/modules/curl_fetch.so: tests/modules/blocking_client.c $(SP_PUBLIC_HDRS)
	$(TEST_MODULE_CC) $(LIBCURL_CFLAGS) -o $@ $(BLOCKING_MODULE_SRC) $(LIBCURL_LIBS)
