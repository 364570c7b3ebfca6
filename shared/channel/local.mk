# shared/channel/local.mk
# libspindle-channel: the master<->worker control messages (pure encode and
# decode of fixed-layout packets; REOPEN carries descriptors).  Needs no other
# spindle library.

noinst_LIBRARIES += shared/channel/libspindle-channel.a
shared_channel_libspindle_channel_a_CPPFLAGS = -I$(top_builddir) $(SP_CHANNEL_CPPFLAGS)
shared_channel_libspindle_channel_a_SOURCES = \
	shared/channel/include/spindle/channel.h \
	shared/channel/channel.c

CMOCKA_TESTS += tests/unit/test_channel
if HAVE_CMOCKA
check_PROGRAMS += tests/unit/test_channel
endif
tests_unit_test_channel_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_channel_LDADD = shared/channel/libspindle-channel.a $(CMOCKA_LIBS)
