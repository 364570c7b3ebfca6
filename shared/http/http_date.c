/* HTTP dates (see http_date.h). */
#include "spindle/http_date.h"

#include <string.h>

static const char wday_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void two_digits(char *d, int v)
{
    d[0] = (char)('0' + v / 10);
    d[1] = (char)('0' + v % 10);
}

void sp_http_date_format(time_t t, char *dst)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    memcpy(dst, wday_names[tm.tm_wday], 3);
    dst[3] = ',';
    dst[4] = ' ';
    two_digits(dst + 5, tm.tm_mday);
    dst[7] = ' ';
    memcpy(dst + 8, month_names[tm.tm_mon], 3);
    dst[11] = ' ';
    int y = tm.tm_year + 1900;
    two_digits(dst + 12, (y / 100) % 100);
    two_digits(dst + 14, y % 100);
    dst[16] = ' ';
    two_digits(dst + 17, tm.tm_hour);
    dst[19] = ':';
    two_digits(dst + 20, tm.tm_min);
    dst[22] = ':';
    two_digits(dst + 23, tm.tm_sec);
    memcpy(dst + 25, " GMT", 4);
}

static int parse_num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((unsigned)(s[i] - '0') > 9)
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

int sp_http_date_parse(const char *s, size_t len, time_t *t)
{
    struct tm tm;
    int mon = -1;

    if (len != SP_HTTP_DATE_LEN || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
        s[16] != ' ' || s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
        return -1;
    for (int i = 0; i < 12; i++)
        if (memcmp(s + 8, month_names[i], 3) == 0)
            mon = i;
    memset(&tm, 0, sizeof(tm));
    tm.tm_mday = parse_num(s + 5, 2);
    tm.tm_year = parse_num(s + 12, 4) - 1900;
    tm.tm_hour = parse_num(s + 17, 2);
    tm.tm_min = parse_num(s + 20, 2);
    tm.tm_sec = parse_num(s + 23, 2);
    if (mon < 0 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 0 || tm.tm_hour < 0 ||
        tm.tm_hour > 23 || tm.tm_min < 0 || tm.tm_min > 59 || tm.tm_sec < 0 || tm.tm_sec > 60)
        return -1;
    tm.tm_mon = mon;
    *t = timegm(&tm);
    return 0;
}
