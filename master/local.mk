# master/local.mk: the master process (command line, listeners, worker table,
# signals, reload transaction, control socket and its -s client).
spindle_SOURCES += \
	master/master.h \
	master/main.c \
	master/master.c \
	master/heartbeat.c \
	master/reload.c \
	master/listeners.c \
	master/control.c \
	master/client.c \
	master/spawn.c \
	master/pidfile.c \
	master/notify.c \
	master/inherit.c \
	master/upgrade.c \
	master/tickets.c \
	master/modcheck.c
