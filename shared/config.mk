# shared/config.mk
