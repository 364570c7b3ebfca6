# worker/cmd/local.mk: the command service, [cmd NAME] (RESP2, as Redis clients speak).

SP_SERVICES += cmd
SP_SERVICES_CONF_SOURCES += worker/cmd/cmd_conf.h worker/cmd/cmd_conf.c
worker_libspindle_worker_a_SOURCES += worker/cmd/cmd.h worker/cmd/cmd.c worker/cmd/cmd_builtin.c \
	worker/include/spindle/command.h
