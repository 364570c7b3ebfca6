# Integration tests: Python scripts (TAP) that start the real ./spindle on 127.0.0.1.
EXTRA_DIST += tests/integration/harness.py

# The http and echo services.
INTEGRATION_TESTS += \
	tests/integration/test_http.py
EXTRA_DIST += \
	tests/integration/httpclient.py \
	tests/integration/test_http.py
