# worker/echo/local.mk: the echo service, [echo NAME].

SP_SERVICES += echo
SP_SERVICES_CONF_SOURCES += worker/echo/echo_conf.h worker/echo/echo_conf.c
worker_libspindle_worker_a_SOURCES += worker/echo/echo.c
