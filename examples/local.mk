# examples/local.mk: module sources a user builds out of tree against the
# installed SDK (pkg-config --cflags spindle), installed beside the other
# examples ($(docdir)/examples/hello/).
#
# make check builds examples/hello/hello.so here with the in-tree include
# folders, and tests/unit/test_http_handler loads it and sends it requests;
# test_install.py builds it with its own Makefile against a staged install.

hellodir = $(docdir)/examples/hello
hello_DATA = examples/hello/hello.c examples/hello/Makefile
EXTRA_DIST += $(hello_DATA)

examples/hello/hello.so: examples/hello/hello.c $(SP_PUBLIC_HDRS)
	$(AM_V_CC)$(MKDIR_P) examples/hello && \
	$(CC) $(AM_CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) -shared -fPIC -o $@ $(srcdir)/examples/hello/hello.c
CLEANFILES += examples/hello/hello.so
