# worker/local.mk: one worker process (control channel, acceptors) and its services.

spindle_SOURCES += \
	worker/worker.h \
	worker/worker.c \
	worker/echo.c \
	worker/http.h \
	worker/http.c \
	worker/http_body.c \
	worker/http_response.c \
	worker/http_static.c \
	worker/http_mime.c \
	worker/http_status.c \
	worker/http_access_log.c

# The example site served by spindle.conf.example.
EXTRA_DIST += www/index.html

# The request body reader, tested against real sockets.
CMOCKA_TESTS += tests/unit/test_http_body
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_body
endif
tests_unit_test_http_body_SOURCES = tests/unit/test_http_body.c worker/http_body.c \
	worker/http_response.c
tests_unit_test_http_body_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/worker
tests_unit_test_http_body_LDADD = $(UNIT_LDADD)
