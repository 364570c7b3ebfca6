# bench/local.mk: libevent baselines and load generators, built only with
# ./configure --enable-bench. They are never part of `make check`; bench/run drives them.

EXTRA_DIST += \
	bench/README.md \
	bench/run \
	bench/instr.sh \
	bench/pack-static.sh \
	bench/nginx.conf.in \
	bench/plot.gp \
	bench/test_chart.py \
	bench/load/pipeline.lua

# The plaintext route as a module (bench/instr.sh's and bench/run's "module"
# workload), built in every build so that make check builds it too.
BENCH_MODULES = bench/modules/plaintext.so
EXTRA_DIST += bench/modules/plaintext.c
CLEANFILES += $(BENCH_MODULES)
bench/modules/plaintext.so: bench/modules/plaintext.c $(SP_PUBLIC_HDRS)
	$(AM_V_CC)$(MKDIR_P) bench/modules && \
	$(CC) $(AM_CPPFLAGS) $(AM_CFLAGS) $(CFLAGS) -shared -fPIC -o $@ $(srcdir)/bench/modules/plaintext.c

if ENABLE_BENCH
noinst_PROGRAMS = \
	bench/baseline/ev_http \
	bench/baseline/ev_echo \
	bench/baseline/epoll_srv \
	bench/load/echo_load \
	bench/load/idle_conns

bench_baseline_ev_http_SOURCES = bench/baseline/ev_http.c bench/baseline/prefork.c \
	bench/baseline/prefork.h
bench_baseline_ev_http_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
bench_baseline_ev_http_LDADD = $(LIBEVENT_LIBS)

bench_baseline_ev_echo_SOURCES = bench/baseline/ev_echo.c bench/baseline/prefork.c \
	bench/baseline/prefork.h
bench_baseline_ev_echo_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
bench_baseline_ev_echo_LDADD = $(LIBEVENT_LIBS)

bench_baseline_epoll_srv_SOURCES = bench/baseline/epoll_srv.c bench/baseline/prefork.c \
	bench/baseline/prefork.h
bench_baseline_epoll_srv_CFLAGS = $(AM_CFLAGS) $(LIBEVENT_CFLAGS)
bench_baseline_epoll_srv_LDADD = $(LIBEVENT_LIBS)

bench_load_echo_load_SOURCES = bench/load/echo_load.c
bench_load_echo_load_LDADD = $(PTHREAD_LIBS)

bench_load_idle_conns_SOURCES = bench/load/idle_conns.c

# The fiber switch micro-benchmark.
noinst_PROGRAMS += bench/fiber_bench
bench_fiber_bench_SOURCES = bench/fiber_bench.c
bench_fiber_bench_LDADD = shared/runtime/libspindle-runtime.a $(PTHREAD_LIBS)
endif
