# The configuration loader and the master<->worker control-channel messages.

shared_libspindle_a_SOURCES += \
	shared/include/spindle/config.h \
	shared/include/spindle/channel.h \
	shared/config_internal.h \
	shared/config.c \
	shared/config_values.c \
	shared/channel.c

CMOCKA_TESTS += \
	tests/unit/test_config \
	tests/unit/test_channel
if HAVE_CMOCKA
check_PROGRAMS += \
	tests/unit/test_config \
	tests/unit/test_channel
endif
tests_unit_test_config_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_config_LDADD = $(UNIT_LDADD)
tests_unit_test_channel_CFLAGS = $(UNIT_CFLAGS)
tests_unit_test_channel_LDADD = $(UNIT_LDADD)
