/*
 * HTTP dates (RFC 9110 5.6.7): the IMF-fixdate form, "Sun, 06 Nov 1994
 * 08:49:37 GMT", as the Date, Last-Modified and If-Modified-Since fields carry
 * it.  Pure: no clock is read here; the caller passes the time.
 */
#ifndef SPINDLE_HTTP_DATE_H
#define SPINDLE_HTTP_DATE_H

#include <stddef.h>
#include <time.h>

#define SP_HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

/* Formats t (seconds since the epoch) as an IMF-fixdate into dst
 * (SP_HTTP_DATE_LEN bytes, no NUL). */
void sp_http_date_format(time_t t, char *dst);

/* Parses an IMF-fixdate.  Returns 0 and sets *t, or -1 for anything else:
 * the obsolete RFC 850 and asctime forms are not read (RFC 9110 13.1.3 lets a
 * server ignore a date it cannot read). */
int sp_http_date_parse(const char *s, size_t len, time_t *t);

#endif
