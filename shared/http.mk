# shared/http.mk
# The HTTP/1.1 request parser, chunked decoder and path helpers.

shared_libspindle_a_SOURCES += \
	shared/include/spindle/http_parser.h \
	shared/http_parser.c \
	shared/http_path.c

CMOCKA_TESTS += tests/unit/test_http_parser
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_parser
endif
tests_unit_test_http_parser_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_http_parser_LDADD = $(UNIT_LDADD)
