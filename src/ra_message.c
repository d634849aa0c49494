/*
 * Parsing of the backends' Redis messages: plain C (jansson, no nginx
 * headers).  Every message is untrusted: the size is checked before
 * parsing, jansson rejects duplicate keys, NUL characters, invalid UTF-8,
 * NaN, infinities and trailing garbage, and every known field is checked
 * for its type and range.  See docs/protocol.md.
 */

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

#include <jansson.h>

#include "ra_message.h"


/* s (len bytes) is the literal l, in any case */
#define RA_MSG_IS(s, len, l)                                                  \
    ((len) == sizeof(l) - 1 && strncasecmp(s, l, sizeof(l) - 1) == 0)

#define RA_STR_(x)  #x
#define RA_STR(x)   RA_STR_(x)


static ra_msg_err_e ra_msg_json_error(const json_error_t *error,
    const char **detail);
static ra_msg_err_e ra_msg_parse_url(json_t *value, ra_msg_t *msg,
    const char **detail);
static ra_msg_err_e ra_msg_parse_count(json_t *value, uint32_t min,
    uint32_t *out);
static ra_msg_err_e ra_msg_parse_cpu(json_t *value, uint32_t *out);
static unsigned ra_msg_scheme_port(const char *s, size_t len);
static int ra_msg_host_ipv6(const char *s, size_t len, char *buf,
    size_t size);


static const char  *ra_msg_err_names[RA_MSG_ERR_COUNT] = {
    "ok",
    "too_large",
    "json",
    "dup_key",
    "url",
    "type",
    "range",
    "missing",
    "signature"
};


const char *
ra_msg_err_name(ra_msg_err_e err)
{
    if ((unsigned) err >= RA_MSG_ERR_COUNT) {
        return "unknown";
    }

    return ra_msg_err_names[err];
}


ra_msg_err_e
ra_msg_parse(ra_msg_type_e type, const char *data, size_t len,
    ra_msg_t *msg, const char **detail)
{
    json_t        *root, *value;
    const char    *dummy;
    ra_msg_err_e   rc;
    json_error_t   error;

    if (detail == NULL) {
        detail = &dummy;
    }

    memset(msg, 0, sizeof(ra_msg_t));

    if (type != RA_MSG_REGISTER && type != RA_MSG_SIGNALING) {
        *detail = "unknown message type";
        return RA_MSG_ERR_TYPE;
    }

    if (len > RA_MSG_MAX_LEN) {
        *detail = "message is longer than " RA_STR(RA_MSG_MAX_LEN) " bytes";
        return RA_MSG_ERR_TOO_LARGE;
    }

    if (len == 0 || data == NULL) {
        *detail = "empty message";
        return RA_MSG_ERR_JSON;
    }

    if (memchr(data, '\0', len) != NULL) {
        *detail = "NUL byte in message";
        return RA_MSG_ERR_JSON;
    }

    /*
     * no JSON_DECODE_ANY (the top level must be an object or an array),
     * no JSON_ALLOW_NUL ("\u0000" is rejected), no JSON_DISABLE_EOF_CHECK
     * (trailing garbage is rejected)
     */

    root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &error);

    if (root == NULL) {
        return ra_msg_json_error(&error, detail);
    }

    if (!json_is_object(root)) {
        *detail = "message is not a JSON object";
        rc = RA_MSG_ERR_JSON;
        goto done;
    }

    rc = ra_msg_parse_url(json_object_get(root, "url"), msg, detail);
    if (rc != RA_MSG_OK) {
        goto done;
    }

    value = json_object_get(root, "connections");

    if (value != NULL && !json_is_null(value)) {
        rc = ra_msg_parse_count(value, 0, &msg->connections);
        if (rc != RA_MSG_OK) {
            *detail = (rc == RA_MSG_ERR_TYPE)
                      ? "connections is not a number"
                      : "connections is not an integer from 0 to "
                        RA_STR(RA_MSG_COUNT_MAX);
            goto done;
        }

        msg->has_connections = 1;
    }

    value = json_object_get(root, "cpu");

    if (value != NULL && !json_is_null(value)) {
        rc = ra_msg_parse_cpu(value, &msg->cpu);
        if (rc != RA_MSG_OK) {
            *detail = (rc == RA_MSG_ERR_TYPE)
                      ? "cpu is not a number"
                      : "cpu is not a number from 0 to 100";
            goto done;
        }

        msg->has_cpu = 1;
    }

    value = json_object_get(root, "capacity");

    if (value != NULL && !json_is_null(value)) {
        rc = ra_msg_parse_count(value, 1, &msg->capacity);
        if (rc != RA_MSG_OK) {
            *detail = (rc == RA_MSG_ERR_TYPE)
                      ? "capacity is not a number"
                      : "capacity is not an integer from 1 to "
                        RA_STR(RA_MSG_COUNT_MAX);
            goto done;
        }

        msg->has_capacity = 1;
    }

    value = json_object_get(root, "draining");

    if (value != NULL && !json_is_null(value)) {
        if (!json_is_boolean(value)) {
            *detail = "draining is not true or false";
            rc = RA_MSG_ERR_TYPE;
            goto done;
        }

        msg->has_draining = 1;
        msg->draining = json_is_true(value) ? 1 : 0;
    }

    /* a registered backend leaves the fleet (ra_fleet.c) */

    value = json_object_get(root, "deregister");

    if (type == RA_MSG_REGISTER && value != NULL && !json_is_null(value)) {
        if (!json_is_boolean(value)) {
            *detail = "deregister is not true or false";
            rc = RA_MSG_ERR_TYPE;
            goto done;
        }

        msg->deregister = json_is_true(value) ? 1 : 0;
    }

    /* a draining report without load is useful: a stopping backend */

    if (type == RA_MSG_SIGNALING
        && !msg->has_connections && !msg->has_cpu && !msg->has_draining)
    {
        *detail = "signaling message without connections, cpu or draining";
        rc = RA_MSG_ERR_MISSING;
        goto done;
    }

    *detail = "ok";
    rc = RA_MSG_OK;

done:

    json_decref(root);

    return rc;
}


static ra_msg_err_e
ra_msg_json_error(const json_error_t *error, const char **detail)
{
    switch (json_error_code(error)) {

    case json_error_duplicate_key:
        *detail = "duplicate key";
        return RA_MSG_ERR_DUP_KEY;

    case json_error_numeric_overflow:
        *detail = "number too large to parse";
        return RA_MSG_ERR_RANGE;

    case json_error_premature_end_of_input:
        *detail = "truncated JSON";
        return RA_MSG_ERR_JSON;

    case json_error_end_of_input_expected:
        *detail = "garbage after the JSON object";
        return RA_MSG_ERR_JSON;

    case json_error_invalid_utf8:
        *detail = "invalid UTF-8";
        return RA_MSG_ERR_JSON;

    case json_error_null_character:
    case json_error_null_byte_in_key:
        *detail = "NUL character in a string";
        return RA_MSG_ERR_JSON;

    case json_error_stack_overflow:
        *detail = "JSON nested too deeply";
        return RA_MSG_ERR_JSON;

    default:
        *detail = "invalid JSON";
        return RA_MSG_ERR_JSON;
    }
}


static ra_msg_err_e
ra_msg_parse_url(json_t *value, ra_msg_t *msg, const char **detail)
{
    char         buf[RA_MSG_HOSTPORT_LEN];
    size_t       len, i;
    const char  *s;

    if (value == NULL || json_is_null(value)) {
        *detail = "url is missing";
        return RA_MSG_ERR_URL;
    }

    if (!json_is_string(value)) {
        *detail = "url is not a string";
        return RA_MSG_ERR_URL;
    }

    s = json_string_value(value);
    len = json_string_length(value);

    if (len == 0) {
        *detail = "url is empty";
        return RA_MSG_ERR_URL;
    }

    if (len > RA_MSG_URL_MAX) {
        *detail = "url is longer than " RA_STR(RA_MSG_URL_MAX) " bytes";
        return RA_MSG_ERR_URL;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) s[i] <= ' ' || (unsigned char) s[i] >= 0x7f) {
            *detail = "url has a space, a control or a non-ASCII character";
            return RA_MSG_ERR_URL;
        }
    }

    if (ra_msg_url_hostport(s, len, buf, sizeof(buf)) < 0) {
        *detail = "url has no usable scheme, host and port";
        return RA_MSG_ERR_URL;
    }

    memcpy(msg->url, s, len);
    msg->url[len] = '\0';
    msg->url_len = len;

    return RA_MSG_OK;
}


/*
 * An integer from min to RA_MSG_COUNT_MAX; a real with no fraction part
 * (42.0, 4.2e1) is accepted too, as some encoders write every number so.
 */

static ra_msg_err_e
ra_msg_parse_count(json_t *value, uint32_t min, uint32_t *out)
{
    double      d;
    json_int_t  n;

    if (json_is_integer(value)) {
        n = json_integer_value(value);

        if (n < (json_int_t) min || n > RA_MSG_COUNT_MAX) {
            return RA_MSG_ERR_RANGE;
        }

        *out = (uint32_t) n;
        return RA_MSG_OK;
    }

    if (!json_is_real(value)) {
        return RA_MSG_ERR_TYPE;
    }

    d = json_real_value(value);

    /* also false for NaN */

    if (!(d >= (double) min && d <= (double) RA_MSG_COUNT_MAX)) {
        return RA_MSG_ERR_RANGE;
    }

    if ((double) (uint32_t) d != d) {
        return RA_MSG_ERR_RANGE;
    }

    *out = (uint32_t) d;
    return RA_MSG_OK;
}


/* a percent from 0 to 100, stored in hundredths: 37.5 is 3750 */

static ra_msg_err_e
ra_msg_parse_cpu(json_t *value, uint32_t *out)
{
    double      d;
    json_int_t  n;

    if (json_is_integer(value)) {
        n = json_integer_value(value);

        if (n < 0 || n > 100) {
            return RA_MSG_ERR_RANGE;
        }

        *out = (uint32_t) n * 100;
        return RA_MSG_OK;
    }

    if (!json_is_real(value)) {
        return RA_MSG_ERR_TYPE;
    }

    d = json_real_value(value);

    /* also false for NaN */

    if (!(d >= 0.0 && d <= 100.0)) {
        return RA_MSG_ERR_RANGE;
    }

    *out = (uint32_t) (d * 100.0 + 0.5);

    if (*out > RA_MSG_CPU_MAX) {
        *out = RA_MSG_CPU_MAX;
    }

    return RA_MSG_OK;
}


int
ra_msg_url_hostport(const char *url, size_t len, char *buf, size_t size)
{
    int          n, bare;
    char         host[RA_MSG_HOSTPORT_LEN];
    size_t       i, host_len;
    unsigned     port, digits;
    const char  *p, *end, *last;

    if (url == NULL || buf == NULL || len == 0 || len > RA_MSG_URL_MAX) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if ((unsigned char) url[i] <= ' ' || (unsigned char) url[i] >= 0x7f) {
            return -1;
        }
    }

    end = url + len;
    port = 0;

    /* the scheme, if any */

    p = NULL;

    for (i = 0; i + 3 <= len; i++) {
        if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/') {
            p = url + i + 3;
            break;
        }
    }

    if (p != NULL) {
        port = ra_msg_scheme_port(url, i);
        if (port == 0) {
            return -1;
        }

        bare = 0;

    } else {
        p = url;
        bare = 1;                      /* "host:port", no scheme */
    }

    /* the host */

    if (p < end && *p == '[') {
        for (last = p + 1; last < end && *last != ']'; last++) {
            /* void */
        }

        if (last == end) {
            return -1;
        }

        n = ra_msg_host_ipv6(p + 1, (size_t) (last - (p + 1)), host + 1,
                             sizeof(host) - 2);
        if (n < 0) {
            return -1;
        }

        host[0] = '[';
        host[n + 1] = ']';
        host_len = (size_t) n + 2;
        p = last + 1;

    } else {
        host_len = 0;

        while (p < end
               && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                   || (*p >= '0' && *p <= '9')
                   || *p == '-' || *p == '.' || *p == '_'))
        {
            if (host_len == sizeof(host) - 1) {
                return -1;
            }

            host[host_len++] = (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p;
            p++;
        }

        if (host_len == 0) {
            return -1;
        }
    }

    /* the port */

    if (p < end && *p == ':') {
        p++;
        port = 0;

        for (digits = 0; p < end && *p >= '0' && *p <= '9'; digits++) {
            if (digits == 5) {
                return -1;
            }

            port = port * 10 + (unsigned) (*p++ - '0');
        }

        if (digits == 0 || port == 0 || port > 65535) {
            return -1;
        }

    } else if (bare) {
        return -1;
    }

    /* the rest: nothing, or a path, query or fragment after a scheme */

    if (p < end && (bare || (*p != '/' && *p != '?' && *p != '#'))) {
        return -1;
    }

    n = snprintf(buf, size, "%.*s:%u", (int) host_len, host, port);

    if (n < 0 || (size_t) n >= size) {
        return -1;
    }

    return n;
}


/* the default port of a scheme, or 0 when the scheme is not accepted */

static unsigned
ra_msg_scheme_port(const char *s, size_t len)
{
    if (RA_MSG_IS(s, len, "ws")) {
        return 80;
    }

    if (RA_MSG_IS(s, len, "wss")) {
        return 443;
    }

    if (RA_MSG_IS(s, len, "http")) {
        return 80;
    }

    if (RA_MSG_IS(s, len, "https")) {
        return 443;
    }

    return 0;
}


/* writes the canonical text of an IPv6 address, without brackets */

static int
ra_msg_host_ipv6(const char *s, size_t len, char *buf, size_t size)
{
    char             text[INET6_ADDRSTRLEN];
    struct in6_addr  addr;

    if (len == 0 || len >= sizeof(text) || size < INET6_ADDRSTRLEN) {
        return -1;
    }

    memcpy(text, s, len);
    text[len] = '\0';

    if (inet_pton(AF_INET6, text, &addr) != 1) {
        return -1;
    }

    if (inet_ntop(AF_INET6, &addr, buf, (socklen_t) size) == NULL) {
        return -1;
    }

    return (int) strlen(buf);
}


size_t
ra_msg_room_size(const ra_msg_room_t *m)
{
    return sizeof("1 0123456789abcdef n  \n") - 1 + m->upstream_len
           + m->backend_len + m->room_len;
}


size_t
ra_msg_room_encode(const ra_msg_room_t *m, char *buf)
{
    char  *p;
    int    n;

    n = sprintf(buf, "1 %016llx %c ", (unsigned long long) m->instance,
                m->kind);
    p = buf + n;

    memcpy(p, m->upstream, m->upstream_len);
    p += m->upstream_len;
    *p++ = ' ';
    memcpy(p, m->backend, m->backend_len);
    p += m->backend_len;
    *p++ = '\n';
    memcpy(p, m->room, m->room_len);
    p += m->room_len;

    return (size_t) (p - buf);
}


ra_msg_err_e
ra_msg_room_parse(const char *data, size_t len, ra_msg_room_t *m,
    const char **detail)
{
    size_t       i, flen[5];
    const char  *p, *nl, *end, *f[5];

    end = data + len;
    nl = memchr(data, '\n', len);

    if (nl == NULL) {
        *detail = "no newline before the room";
        return RA_MSG_ERR_JSON;
    }

    /* five fields separated by one space each, the last up to the newline */

    p = data;

    for (i = 0; i < 5; i++) {
        f[i] = p;

        while (p < nl && *p != ' ') {
            p++;
        }

        flen[i] = (size_t) (p - f[i]);

        if (flen[i] == 0 || (i < 4 && p == nl) || (i == 4 && p != nl)) {
            *detail = "not five fields";
            return RA_MSG_ERR_JSON;
        }

        p++;
    }

    if (flen[0] != 1 || f[0][0] != '1') {
        *detail = "unknown version";
        return RA_MSG_ERR_JSON;
    }

    if (flen[1] != 16) {
        *detail = "instance is not 16 hex digits";
        return RA_MSG_ERR_JSON;
    }

    m->instance = 0;

    for (i = 0; i < 16; i++) {
        char  c = f[1][i];

        if (c >= '0' && c <= '9') {
            m->instance = (m->instance << 4) | (uint64_t) (c - '0');

        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            m->instance = (m->instance << 4) | (uint64_t) ((c | 0x20) - 'a'
                                                           + 10);

        } else {
            *detail = "instance is not 16 hex digits";
            return RA_MSG_ERR_JSON;
        }
    }

    if (flen[2] != 1
        || (f[2][0] != RA_MSG_ROOM_NEW && f[2][0] != RA_MSG_ROOM_MOVED
            && f[2][0] != RA_MSG_ROOM_COUNT))
    {
        *detail = "kind is not n, m or c";
        return RA_MSG_ERR_JSON;
    }

    if (nl + 1 == end) {
        *detail = "no room";
        return RA_MSG_ERR_JSON;
    }

    if (f[2][0] == RA_MSG_ROOM_COUNT) {
        /* one or two numbers, a space between */

        i = 0;
        flen[0] = 0;

        for (p = nl + 1; p < end; p++) {
            if (*p == ' ' && flen[0] && i == 0) {
                i = 1;
                flen[0] = 0;
                continue;
            }

            if (*p < '0' || *p > '9' || ++flen[0] > 9) {
                *detail = "count is not one or two decimal numbers";
                return RA_MSG_ERR_JSON;
            }
        }

        if (flen[0] == 0) {
            *detail = "count is not one or two decimal numbers";
            return RA_MSG_ERR_JSON;
        }
    }

    m->kind = f[2][0];
    m->upstream = f[3];
    m->upstream_len = flen[3];
    m->backend = f[4];
    m->backend_len = flen[4];
    m->room = nl + 1;
    m->room_len = (size_t) (end - m->room);

    *detail = "ok";

    return RA_MSG_OK;
}
