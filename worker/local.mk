# worker/local.mk: one worker process (control channel, acceptors) and its services.

spindle_SOURCES += \
	worker/worker.h \
	worker/worker.c \
	worker/echo.c \
	worker/http.h \
	worker/http.c \
	worker/http_response.c \
	worker/http_static.c \
	worker/http_mime.c \
	worker/http_status.c \
	worker/http_access_log.c

# The example site served by spindle.conf.example.
EXTRA_DIST += www/index.html
