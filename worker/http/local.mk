# worker/http/local.mk: the HTTP/1.1 service, [http NAME].  http_conf.c holds
# its configuration keys (the half the config fuzzer links alone).

SP_SERVICES += http
SP_SERVICES_CONF_SOURCES += worker/http/http_conf.h worker/http/http_conf.c \
	worker/http/http_tls_conf.c
worker_libspindle_worker_a_SOURCES += \
	worker/http/http.h \
	worker/http/http.c \
	worker/http/http_body.c \
	worker/http/http_response.c \
	worker/http/http_static.c \
	worker/http/http_mime.c \
	worker/http/http_handler.c \
	worker/http/http_proxy.h \
	worker/http/http_proxy.c \
	worker/http/http_upstream.c \
	worker/http/http_status.c \
	worker/http/http_access_log.c \
	worker/http/http_tls.h \
	worker/http/http_tls.c
# The request body reader, tested against real sockets.
CMOCKA_TESTS += tests/unit/test_http_body
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_body
endif
tests_unit_test_http_body_SOURCES = tests/unit/test_http_body.c worker/http/http_body.c \
	worker/http/http_response.c
tests_unit_test_http_body_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/worker/http
tests_unit_test_http_body_LDADD = $(UNIT_LDADD)

# The handler API and its routing, through the service's connection code
# over a socketpair, with a stub worker and modules registered by the test.
CMOCKA_TESTS += tests/unit/test_http_handler
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_handler
endif
tests_unit_test_http_handler_SOURCES = tests/unit/test_http_handler.c \
	worker/http/http.c worker/http/http_body.c worker/http/http_response.c \
	worker/http/http_handler.c worker/http/http_proxy.c worker/http/http_upstream.c \
	worker/http/http_status.c \
	worker/http/http_static.c \
	worker/http/http_mime.c worker/http/http_access_log.c worker/http/http_conf.c \
	worker/http/http_tls_conf.c worker/http/http_tls.c \
	worker/module.c worker/metrics.c
tests_unit_test_http_handler_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/worker/http \
	-DHELLO_SO='"$(abs_top_builddir)/examples/hello/hello.so"'
# The example module it loads finds the handler API in the program.
tests_unit_test_http_handler_LDFLAGS = $(AM_LDFLAGS) -rdynamic
tests_unit_test_http_handler_LDADD = $(UNIT_LDADD) -ldl
EXTRA_tests_unit_test_http_handler_DEPENDENCIES = examples/hello/hello.so
