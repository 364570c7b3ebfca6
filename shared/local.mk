# shared/local.mk
# The SDK that `make install` puts beside the server, so that a module or a
# program can be built against spindle out of tree:
#   $(libdir)/libspindle.a            the five libraries in one archive
#   $(includedir)/spindle/*.h         every public header, flat (<spindle/fiber.h>),
#                                     the module API of worker/include/ among them
#   $(libdir)/pkgconfig/spindle.pc    pkg-config --cflags --libs spindle
#
# One archive rather than the five: a user links -lspindle and never has to
# know the order the libraries must come in (config before runtime), and a
# static link still takes only the objects a program uses.  The build itself
# keeps linking the five apart (test_library_layout.py checks they stay so).
# The archive is made of the very objects of the five libraries, so a source
# added to one of them is in it without a change here.

lib_LIBRARIES = libspindle.a
libspindle_a_SOURCES =
libspindle_a_LIBADD = $(shared_runtime_libspindle_runtime_a_OBJECTS) \
	$(shared_http_libspindle_http_a_OBJECTS) \
	$(shared_config_libspindle_config_a_OBJECTS) \
	$(shared_channel_libspindle_channel_a_OBJECTS) \
	$(shared_resp_libspindle_resp_a_OBJECTS)
# Automake cannot tell objects from flags in a variable: without this the
# archive would not wait for (nor be remade after) the objects under make -j.
libspindle_a_DEPENDENCIES = $(libspindle_a_LIBADD)

# Installed flat: <spindle/NAME.h>, as the sources include them.
# test_install.py fails when a header of shared/*/include/spindle/ is missing here.
spindleincludedir = $(includedir)/spindle
spindleinclude_HEADERS = \
	shared/runtime/include/spindle/clock.h \
	shared/runtime/include/spindle/fiber.h \
	shared/runtime/include/spindle/hook.h \
	shared/runtime/include/spindle/io.h \
	shared/runtime/include/spindle/iomanager.h \
	shared/runtime/include/spindle/log.h \
	shared/runtime/include/spindle/net.h \
	shared/runtime/include/spindle/proxy_proto.h \
	shared/runtime/include/spindle/stream.h \
	shared/runtime/include/spindle/timer.h \
	shared/runtime/include/spindle/waitq.h \
	shared/http/include/spindle/http_date.h \
	shared/http/include/spindle/http_parser.h \
	shared/http/include/spindle/http_range.h \
	shared/http/include/spindle/http_response.h \
	shared/http/include/spindle/http_write.h \
	shared/config/include/spindle/config.h \
	shared/config/include/spindle/service.h \
	shared/channel/include/spindle/channel.h \
	shared/resp/include/spindle/resp.h \
	worker/include/spindle/command.h \
	worker/include/spindle/module.h \
	worker/include/spindle/http_handler.h \
	worker/include/spindle/worker.h

# What a module's source depends on (examples/local.mk).
SP_PUBLIC_HDRS = $(spindleinclude_HEADERS)

# spindle.pc is written by configure from spindle.pc.in.
pkgconfigdir = $(libdir)/pkgconfig
pkgconfig_DATA = spindle.pc
EXTRA_DIST += spindle.pc.in
