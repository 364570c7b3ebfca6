# worker/echo/local.mk: the echo service, [echo NAME].

SP_SERVICES += echo
worker_libspindle_worker_a_SOURCES += worker/echo/echo.c
