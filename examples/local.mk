# examples/local.mk: module sources a user builds out of tree against the
# installed SDK (pkg-config --cflags spindle), installed beside the other
# examples ($(docdir)/examples/hello/, $(docdir)/examples/upper/).
#
# make check builds examples/hello/hello.so and examples/upper/upper.so here
# with the in-tree include folders (tests/unit/test_http_handler loads
# hello.so and sends it requests); test_install.py builds both with their own
# Makefiles against a staged install and loads them with the installed server.

hellodir = $(docdir)/examples/hello
hello_DATA = examples/hello/hello.c examples/hello/Makefile
EXTRA_DIST += $(hello_DATA)

examples/hello/hello.so: examples/hello/hello.c $(SP_PUBLIC_HDRS)
	$(AM_V_CC)$(MKDIR_P) examples/hello && \
	$(CC) $(AM_CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) -shared -fPIC -o $@ $(srcdir)/examples/hello/hello.c
CLEANFILES += examples/hello/hello.so

upperdir = $(docdir)/examples/upper
upper_DATA = examples/upper/upper.c examples/upper/Makefile
EXTRA_DIST += $(upper_DATA)

examples/upper/upper.so: examples/upper/upper.c $(SP_PUBLIC_HDRS)
	$(AM_V_CC)$(MKDIR_P) examples/upper && \
	$(CC) $(AM_CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) -shared -fPIC -o $@ $(srcdir)/examples/upper/upper.c
CLEANFILES += examples/upper/upper.so

# kvdemo needs hiredis (configure checks); without it the tests that load it are SKIP.
kvdemodir = $(docdir)/examples/kvdemo
kvdemo_DATA = examples/kvdemo/kvdemo.c examples/kvdemo/Makefile
EXTRA_DIST += $(kvdemo_DATA)
if HAVE_HIREDIS
examples/kvdemo/kvdemo.so: examples/kvdemo/kvdemo.c $(SP_PUBLIC_HDRS)
	$(AM_V_CC)$(MKDIR_P) examples/kvdemo && \
	$(CC) $(AM_CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) $(HIREDIS_CFLAGS) -shared -fPIC -o $@ \
	$(srcdir)/examples/kvdemo/kvdemo.c $(HIREDIS_LIBS)
check_DATA += examples/kvdemo/kvdemo.so
endif
CLEANFILES += examples/kvdemo/kvdemo.so
