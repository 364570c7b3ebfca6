# Integration tests: Python scripts (TAP) that start the real ./spindle on 127.0.0.1.
EXTRA_DIST += tests/integration/harness.py

# The http and echo services.
INTEGRATION_TESTS += \
	tests/integration/test_http.py
EXTRA_DIST += \
	tests/integration/httpclient.py \
	tests/integration/test_http.py

# The master: command line, signals, reload transaction, respawn.
INTEGRATION_TESTS += \
	tests/integration/test_master.py \
	tests/integration/test_reload.py \
	tests/integration/test_signals.py
EXTRA_DIST += \
	tests/integration/loadgen.py \
	tests/integration/test_master.py \
	tests/integration/test_reload.py \
	tests/integration/test_signals.py
INTEGRATION_TESTS += tests/integration/test_http_errors.py
EXTRA_DIST += tests/integration/test_http_errors.py
INTEGRATION_TESTS += \
	tests/integration/test_http_static.py \
	tests/integration/test_echo.py
EXTRA_DIST += \
	tests/integration/test_http_static.py \
	tests/integration/test_echo.py
