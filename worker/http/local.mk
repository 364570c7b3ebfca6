# worker/http/local.mk: the HTTP/1.1 service, [http NAME].  Its sources sit in
# worker/ next to this folder; http/http_conf.c holds its configuration keys.

SP_SERVICES += http
SP_SERVICES_CONF_SOURCES += worker/http/http_conf.h worker/http/http_conf.c
worker_libspindle_worker_a_SOURCES += \
	worker/http.h \
	worker/http.c \
	worker/http_body.c \
	worker/http_response.c \
	worker/http_static.c \
	worker/http_mime.c \
	worker/http_status.c \
	worker/http_access_log.c

# The request body reader, tested against real sockets.
CMOCKA_TESTS += tests/unit/test_http_body
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_body
endif
tests_unit_test_http_body_SOURCES = tests/unit/test_http_body.c worker/http_body.c \
	worker/http_response.c
tests_unit_test_http_body_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/worker
tests_unit_test_http_body_LDADD = $(UNIT_LDADD)
