# shared/config/local.mk
# libspindle-config: the INI configuration loader (pure: parses into a struct,
# no side effects) and the registry of service definitions whose sections it
# reads.  Uses the runtime's address parsing (spindle/net.h).

noinst_LIBRARIES += shared/config/libspindle-config.a
shared_config_libspindle_config_a_CPPFLAGS = -I$(top_builddir) $(SP_CONFIG_CPPFLAGS) $(SP_RUNTIME_CPPFLAGS)
shared_config_libspindle_config_a_SOURCES = \
	shared/config/include/spindle/config.h \
	shared/config/include/spindle/service.h \
	shared/config/config_internal.h \
	shared/config/config.c \
	shared/config/config_values.c \
	shared/config/config_module.c \
	shared/config/config_upstream.c

CMOCKA_TESTS += tests/unit/test_config
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_config
endif
# The services' keys are tested too: link the services.
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS) -I$(top_srcdir)/worker
tests_unit_test_config_LDADD = worker/libspindle-worker.a $(UNIT_LDADD) $(JEMALLOC_LIBS)
