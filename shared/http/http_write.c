/* Writing response heads (see http_write.h). */
#include "spindle/http_write.h"

const char *sp_http_reason(unsigned status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 304:
        return "Not Modified";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 416:
        return "Range Not Satisfiable";
    case 417:
        return "Expectation Failed";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        break;
    }
    switch (status / 100) {
    case 2:
        return "OK";
    case 3:
        return "Redirection";
    case 4:
        return "Client Error";
    default:
        return "Server Error";
    }
}

size_t sp_http_put_status(char *d, unsigned status, size_t max)
{
    const char *reason = sp_http_reason(status);
    size_t rl = strlen(reason);
    if (rl > max)
        rl = max;
    d[0] = (char)('0' + status / 100 % 10);
    d[1] = (char)('0' + status / 10 % 10);
    d[2] = (char)('0' + status % 10);
    d[3] = ' ';
    memcpy(d + 4, reason, rl);
    return 4 + rl;
}

size_t sp_http_put_status_line(char *d, unsigned status)
{
    memcpy(d, "HTTP/1.1 ", 9);
    size_t n = 9 + sp_http_put_status(d + 9, status, SIZE_MAX);
    d[n++] = '\r';
    d[n++] = '\n';
    return n;
}

size_t sp_http_put_u64(char *d, uint64_t v)
{
    char tmp[SP_HTTP_U64_MAX_DIGITS];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        d[i] = tmp[n - 1 - i];
    return n;
}

size_t sp_http_put_header(char *d, const char *name, size_t name_len, const char *value,
                          size_t value_len)
{
    memcpy(d, name, name_len);
    d[name_len] = ':';
    d[name_len + 1] = ' ';
    memcpy(d + name_len + 2, value, value_len);
    size_t n = name_len + 2 + value_len;
    d[n++] = '\r';
    d[n++] = '\n';
    return n;
}

size_t sp_http_put_content_length(char *d, uint64_t v)
{
    memcpy(d, "Content-Length: ", 16);
    size_t n = 16 + sp_http_put_u64(d + 16, v);
    d[n++] = '\r';
    d[n++] = '\n';
    return n;
}
