# tests/fuzz/local.mk
# libFuzzer targets, one per parser, and their replay in `make check`.
#
# The replay programs link each target's LLVMFuzzerTestOneInput to a plain
# main (tests/fuzz/replay.c) that runs it on the seed corpus and on every saved
# regression; they are always built.  The fuzzers themselves need clang:
#   CC=clang configure --enable-fuzz && make check && make fuzz FUZZ_SECONDS=60
# A crash found by `make fuzz` lands in tests/fuzz/artifacts/TARGET/ of the
# build tree; copy it to tests/fuzz/regressions/TARGET/ once fixed.

FUZZ_TARGETS = http_request http_response chunked config channel resp proxy_proto
EXTRA_DIST += tests/fuzz/corpus tests/fuzz/regressions tests/fuzz/fuzz.h

FUZZ_REPLAYS = \
	tests/fuzz/fuzz_http_request_replay \
	tests/fuzz/fuzz_http_response_replay \
	tests/fuzz/fuzz_chunked_replay \
	tests/fuzz/fuzz_config_replay \
	tests/fuzz/fuzz_channel_replay \
	tests/fuzz/fuzz_resp_replay \
	tests/fuzz/fuzz_proxy_proto_replay
UNIT_TESTS += $(FUZZ_REPLAYS)
check_PROGRAMS += $(FUZZ_REPLAYS)
FUZZ_REPLAY_CFLAGS = $(AM_CFLAGS) -DSP_FUZZ_SRCDIR='"$(abs_top_srcdir)"'
tests_fuzz_fuzz_http_request_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_http_request.c
tests_fuzz_fuzz_http_request_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"http_request"'
tests_fuzz_fuzz_http_request_replay_LDADD = shared/http/libspindle-http.a
tests_fuzz_fuzz_http_response_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_http_response.c
tests_fuzz_fuzz_http_response_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"http_response"'
tests_fuzz_fuzz_http_response_replay_LDADD = shared/http/libspindle-http.a
tests_fuzz_fuzz_chunked_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_chunked.c
tests_fuzz_fuzz_chunked_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"chunked"'
tests_fuzz_fuzz_chunked_replay_LDADD = shared/http/libspindle-http.a
tests_fuzz_fuzz_config_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_config.c
tests_fuzz_fuzz_config_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -I$(top_srcdir)/worker \
	-DSP_FUZZ_TARGET='"config"'
# The services' key tables and setters are part of what is fuzzed (their
# configuration halves: see worker/local.mk).
tests_fuzz_fuzz_config_replay_LDADD = $(WORKER_LIBS) $(PTHREAD_LIBS)
tests_fuzz_fuzz_channel_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_channel.c
tests_fuzz_fuzz_channel_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"channel"'
tests_fuzz_fuzz_channel_replay_LDADD = shared/channel/libspindle-channel.a
tests_fuzz_fuzz_resp_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_resp.c
tests_fuzz_fuzz_resp_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"resp"'
tests_fuzz_fuzz_resp_replay_LDADD = shared/resp/libspindle-resp.a
tests_fuzz_fuzz_proxy_proto_replay_SOURCES = tests/fuzz/replay.c tests/fuzz/fuzz_proxy_proto.c
tests_fuzz_fuzz_proxy_proto_replay_CFLAGS = $(FUZZ_REPLAY_CFLAGS) -DSP_FUZZ_TARGET='"proxy_proto"'
tests_fuzz_fuzz_proxy_proto_replay_LDADD = shared/runtime/libspindle-runtime.a

if ENABLE_FUZZ
# The parser sources are compiled into each fuzzer with its instrumentation.
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZERS = tests/fuzz/fuzz_http_request tests/fuzz/fuzz_http_response tests/fuzz/fuzz_chunked tests/fuzz/fuzz_config \
	tests/fuzz/fuzz_channel tests/fuzz/fuzz_resp tests/fuzz/fuzz_proxy_proto
check_PROGRAMS += $(FUZZERS)
tests_fuzz_fuzz_http_request_SOURCES = tests/fuzz/fuzz_http_request.c \
	shared/http/http_parser.c shared/http/http_path.c
tests_fuzz_fuzz_http_request_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_http_request_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_http_response_SOURCES = tests/fuzz/fuzz_http_response.c \
	shared/http/http_response.c shared/http/http_parser.c
tests_fuzz_fuzz_http_response_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_http_response_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_chunked_SOURCES = tests/fuzz/fuzz_chunked.c shared/http/http_parser.c
tests_fuzz_fuzz_chunked_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_chunked_LDFLAGS = $(FUZZ_FLAGS)
# The services' configuration halves (key tables, setters) are fuzzed with the
# loader; their worker halves, and the runtime they need, are left out.
# The whole configuration library (so that a file added to it is fuzzed too),
# the address parsing it uses, and the services' configuration halves.
tests_fuzz_fuzz_config_SOURCES = tests/fuzz/fuzz_config.c \
	$(shared_config_libspindle_config_a_SOURCES) shared/runtime/net.c $(SP_SERVICES_CONF_SOURCES)
nodist_tests_fuzz_fuzz_config_SOURCES = worker/services_conf.c
tests_fuzz_fuzz_config_CFLAGS = $(AM_CFLAGS) -I$(top_srcdir)/worker $(FUZZ_FLAGS)
tests_fuzz_fuzz_config_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_config_LDADD = $(OPENSSL_LIBS)
tests_fuzz_fuzz_channel_SOURCES = tests/fuzz/fuzz_channel.c shared/channel/channel.c
tests_fuzz_fuzz_channel_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_channel_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_resp_SOURCES = tests/fuzz/fuzz_resp.c $(shared_resp_libspindle_resp_a_SOURCES)
tests_fuzz_fuzz_resp_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_resp_LDFLAGS = $(FUZZ_FLAGS)
tests_fuzz_fuzz_proxy_proto_SOURCES = tests/fuzz/fuzz_proxy_proto.c shared/runtime/proxy_proto.c
tests_fuzz_fuzz_proxy_proto_CFLAGS = $(AM_CFLAGS) $(FUZZ_FLAGS)
tests_fuzz_fuzz_proxy_proto_LDFLAGS = $(FUZZ_FLAGS)

FUZZ_SECONDS = 60
# Runs every fuzzer named in FUZZ_TARGETS for FUZZ_SECONDS, growing a corpus
# in the build tree from the seeds in the source tree.  Each fuzzer is built
# just before it runs, so a target that fails to build or crashes does not keep
# the others from running; the exit status says whether any failed.
fuzz:
	@rc=0; for t in $(FUZZ_TARGETS); do \
	  if ! $(MAKE) $(AM_MAKEFLAGS) tests/fuzz/fuzz_$$t; then \
	    echo "fuzz_$$t: build failed" >&2; rc=1; continue; \
	  fi; \
	  mkdir -p tests/fuzz/work/$$t tests/fuzz/artifacts/$$t || exit 1; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  tests/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=tests/fuzz/artifacts/$$t/ \
	    tests/fuzz/work/$$t $(srcdir)/tests/fuzz/corpus/$$t \
	    $(srcdir)/tests/fuzz/regressions/$$t || rc=1; \
	done; exit $$rc
else
fuzz:
	@echo "fuzzers not built: configure with CC=clang --enable-fuzz" >&2; exit 1
endif

.PHONY: fuzz
