# tests/integration/local.mk
