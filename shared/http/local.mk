# shared/http/local.mk
# libspindle-http: the HTTP/1.1 protocol, with no I/O: request parser, chunked
# decoder, path helpers.  It includes no other spindle header (the build gives
# it only its own include folder), so a proxy or a test can use it alone.

noinst_LIBRARIES += shared/http/libspindle-http.a
shared_http_libspindle_http_a_CPPFLAGS = -I$(top_builddir) $(SP_HTTP_CPPFLAGS)
shared_http_libspindle_http_a_SOURCES = \
	shared/http/include/spindle/http_parser.h \
	shared/http/http_parser.c \
	shared/http/http_path.c

CMOCKA_TESTS += tests/unit/test_http_parser
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_http_parser
endif
tests_unit_test_http_parser_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_http_parser_LDADD = shared/http/libspindle-http.a $(CMOCKA_LIBS)
