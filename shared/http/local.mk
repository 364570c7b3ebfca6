# shared/http/local.mk
# libspindle-http: the HTTP/1.1 protocol, with no I/O: request and response
# parsers, chunked decoder, path helpers, dates, ranges, writing heads.  It includes no other spindle header (the build gives
# it only its own include folder), so a proxy or a test can use it alone.

noinst_LIBRARIES += shared/http/libspindle-http.a
shared_http_libspindle_http_a_CPPFLAGS = -I$(top_builddir) $(SP_HTTP_CPPFLAGS)
shared_http_libspindle_http_a_SOURCES = \
	shared/http/include/spindle/http_parser.h \
	shared/http/include/spindle/http_response.h \
	shared/http/include/spindle/http_date.h \
	shared/http/include/spindle/http_range.h \
	shared/http/include/spindle/http_write.h \
	shared/http/http_lex.h \
	shared/http/http_parser.c \
	shared/http/http_response.c \
	shared/http/http_path.c \
	shared/http/http_date.c \
	shared/http/http_range.c \
	shared/http/http_write.c

CMOCKA_TESTS += tests/unit/test_http_parser tests/unit/test_http_response tests/unit/test_http_fields
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_parser tests/unit/test_http_response tests/unit/test_http_fields
endif
tests_unit_test_http_parser_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_http_parser_LDADD = shared/http/libspindle-http.a $(CMOCKA_LIBS)
tests_unit_test_http_response_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_http_response_LDADD = shared/http/libspindle-http.a $(CMOCKA_LIBS)
tests_unit_test_http_fields_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_http_fields_LDADD = shared/http/libspindle-http.a $(CMOCKA_LIBS)
