# Integration tests: Python scripts (TAP) that start the real ./spindle on 127.0.0.1.
EXTRA_DIST += tests/integration/harness.py
