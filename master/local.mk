spindle_SOURCES += master/main.c
