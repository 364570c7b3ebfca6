# Integration tests: Python scripts (TAP) that start the real ./spindle on 127.0.0.1.
EXTRA_DIST += $(INTEGRATION_TESTS) \
	tests/integration/harness.py \
	tests/integration/httpclient.py \
	tests/integration/loadgen.py \
	tests/integration/hostile.py \
	tests/integration/upstream.py \
	tests/integration/ws_peer.py

# The http and echo services.
INTEGRATION_TESTS += \
	tests/integration/test_http.py \
	tests/integration/test_access_log_format.py \
	tests/integration/test_tls.py \
	tests/integration/test_http_errors.py \
	tests/integration/test_http_static.py \
	tests/integration/test_http_threads.py \
	tests/integration/test_echo.py \
	tests/integration/test_cmd.py \
	tests/integration/test_hooks_redis.py \
	tests/integration/test_proxy.py \
	tests/integration/test_proxy_large.py \
	tests/integration/test_proxy_apps.py \
	tests/integration/test_proxy_ws.py \
	tests/integration/test_proxy_protocol.py \
	tests/integration/test_health.py

# Two instances behind Debian's haproxy (PROXY protocol v2, health checks):
# one stopped gracefully and one reloaded under load; SKIP without haproxy.
INTEGRATION_TESTS += tests/integration/test_haproxy.py

# A whole worker under valgrind: every service frees what it allocated.  Runs in
# `make check` and `make check-valgrind` of a --without-jemalloc build; SKIP
# elsewhere.
VALGRIND_TESTS = tests/integration/test_worker_valgrind.py
INTEGRATION_TESTS += $(VALGRIND_TESTS)

# The master: command line, signals, reload transaction, respawn.
INTEGRATION_TESTS += \
	tests/integration/test_master.py \
	tests/integration/test_daemon.py \
	tests/integration/test_privileges.py \
	tests/integration/test_reload.py \
	tests/integration/test_reload_threads.py \
	tests/integration/test_metrics.py \
	tests/integration/test_status_page.py \
	tests/integration/test_signals.py \
	tests/integration/test_supervision.py \
	tests/integration/test_notify.py \
	tests/integration/test_include.py \
	tests/integration/test_activation.py \
	tests/integration/test_upgrade.py \
	tests/integration/test_cli.py

# Loadable modules: a module's TCP service, the checker child (-t, reload),
# swapping a module by reload and every way a module can fail to load.
INTEGRATION_TESTS += tests/integration/test_modules.py tests/integration/test_module_http.py \
	tests/integration/test_hooks_curl.py

# Hardening: hostile and unlucky clients, descriptor exhaustion, 20k
# connections, kill -9 under load (docs/security.md).
INTEGRATION_TESTS += \
	tests/integration/test_hostile_requests.py \
	tests/integration/test_hostile_slowloris.py \
	tests/integration/test_hostile_unread.py \
	tests/integration/test_hostile_halfclose.py \
	tests/integration/test_hostile_fds.py \
	tests/integration/test_hostile_20k.py \
	tests/integration/test_hostile_kill.py \
	tests/integration/test_memory.py

# make install: the server, the SDK (a program built against it out of tree),
# the man pages and examples; make uninstall removes every file.  The test
# compiles with the compiler configure chose.
INTEGRATION_TESTS += tests/integration/test_install.py
AM_TESTS_ENVIRONMENT += SPINDLE_CC='$(CC)'; export SPINDLE_CC;
