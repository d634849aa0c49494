/*
 * Unit tests of src/ra_message.c: message parsing, url matching, and the
 * rooms channel's encoder and parser (each the other's inverse).
 */

#include <stdint.h>
#include <stdlib.h>

#include "ra_message.h"
#include "ra_test.h"


#define U   "\"url\":\"ws://10.0.0.11:3000\""


typedef struct {
    ra_msg_type_e   type;
    const char     *json;
    ra_msg_err_e    err;
} case_t;


typedef struct {
    const char     *url;
    const char     *hostport;     /* NULL: not usable */
} url_case_t;


static uint64_t  rnd_state = 0x9e3779b97f4a7c15ULL;
static int       iterations = 20000;     /* per fuzz loop */


static uint64_t
rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;

    return rnd_state;
}


static ra_msg_err_e
parse(ra_msg_type_e type, const char *s, ra_msg_t *msg)
{
    const char  *detail;

    return ra_msg_parse(type, s, strlen(s), msg, &detail);
}


/* what must hold for whatever input; returns 0 on a violation */

static int
sane(const char *data, size_t len, ra_msg_type_e type)
{
    char           buf[RA_MSG_HOSTPORT_LEN];
    ra_msg_t       msg;
    const char    *detail;
    ra_msg_err_e   rc;

    detail = NULL;
    rc = ra_msg_parse(type, data, len, &msg, &detail);

    if ((unsigned) rc >= RA_MSG_ERR_COUNT || detail == NULL
        || detail[0] == '\0')
    {
        return 0;
    }

    if (rc != RA_MSG_OK) {
        return 1;
    }

    if (msg.url_len == 0 || msg.url_len > RA_MSG_URL_MAX
        || msg.url[msg.url_len] != '\0'
        || strlen(msg.url) != msg.url_len
        || ra_msg_url_hostport(msg.url, msg.url_len, buf, sizeof(buf)) < 0)
    {
        return 0;
    }

    if (msg.connections > RA_MSG_COUNT_MAX || msg.cpu > RA_MSG_CPU_MAX
        || msg.capacity > RA_MSG_COUNT_MAX
        || (msg.has_capacity && msg.capacity == 0)
        || (!msg.has_connections && msg.connections != 0)
        || (!msg.has_cpu && msg.cpu != 0)
        || (!msg.has_draining && msg.draining))
    {
        return 0;
    }

    if (type == RA_MSG_SIGNALING
        && !msg.has_connections && !msg.has_cpu && !msg.has_draining)
    {
        return 0;
    }

    return 1;
}


static void
test_err_names(void)
{
    int          i, j, distinct;
    const char  *a, *b;

    RA_OK(strcmp(ra_msg_err_name(RA_MSG_OK), "ok") == 0, "name of ok");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_TOO_LARGE), "too_large") == 0,
          "name of too_large");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_JSON), "json") == 0,
          "name of json");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_DUP_KEY), "dup_key") == 0,
          "name of dup_key");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_URL), "url") == 0,
          "name of url");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_TYPE), "type") == 0,
          "name of type");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_RANGE), "range") == 0,
          "name of range");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_MISSING), "missing") == 0,
          "name of missing");
    RA_OK(strcmp(ra_msg_err_name(RA_MSG_ERR_COUNT), "unknown") == 0,
          "name of the count is unknown");
    RA_OK(strcmp(ra_msg_err_name((ra_msg_err_e) -1), "unknown") == 0,
          "name of -1 is unknown");

    distinct = 1;

    for (i = 0; i < RA_MSG_ERR_COUNT; i++) {
        a = ra_msg_err_name((ra_msg_err_e) i);

        for (j = 0; j < i; j++) {
            b = ra_msg_err_name((ra_msg_err_e) j);
            if (strcmp(a, b) == 0) {
                distinct = 0;
            }
        }
    }

    RA_OK(distinct, "reason names are distinct");
}


static void
test_valid(void)
{
    ra_msg_t      msg;
    const char   *detail;
    ra_msg_err_e  rc;

    /* the origin design's messages, as JSON.stringify writes them */

    rc = parse(RA_MSG_REGISTER, "{\"url\":\"ws://10.0.0.11:3000\"}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "register: url only");
    RA_OK(strcmp(msg.url, "ws://10.0.0.11:3000") == 0, "register: url copied");
    RA_IS_INT(msg.url_len, 19, "register: url_len");
    RA_OK(!msg.has_connections && !msg.has_cpu && !msg.has_capacity
          && !msg.has_draining, "register: no optional field");

    rc = parse(RA_MSG_SIGNALING,
               "{\"url\":\"ws://10.0.0.11:3000\",\"connections\":42}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: url and connections");
    RA_OK(msg.has_connections && !msg.has_cpu && !msg.has_capacity
          && !msg.has_draining, "signaling: only connections present");
    RA_IS_INT(msg.connections, 42, "signaling: connections value");

    rc = parse(RA_MSG_SIGNALING,
               "{\"url\": \"ws://10.0.0.11:3000\", \"connections\": 42,"
               " \"cpu\": 37.5, \"capacity\": 500, \"draining\": false}",
               &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: every field");
    RA_OK(msg.has_connections && msg.has_cpu && msg.has_capacity
          && msg.has_draining, "signaling: every field present");
    RA_IS_INT(msg.connections, 42, "signaling: connections 42");
    RA_IS_INT(msg.cpu, 3750, "signaling: cpu 37.5 is 3750");
    RA_IS_INT(msg.capacity, 500, "signaling: capacity 500");
    RA_IS_INT(msg.draining, 0, "signaling: draining false");

    rc = parse(RA_MSG_SIGNALING, "{" U ",\"cpu\":12}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: cpu without connections");
    RA_OK(!msg.has_connections && msg.has_cpu, "signaling: only cpu");
    RA_IS_INT(msg.cpu, 1200, "signaling: integer cpu 12 is 1200");

    rc = parse(RA_MSG_SIGNALING, "{" U ",\"connections\":0,\"draining\":true}",
               &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: draining true");
    RA_OK(msg.has_draining && msg.draining, "signaling: draining set");
    RA_OK(msg.has_connections && msg.connections == 0,
          "signaling: zero connections");

    /* a registered backend leaves (ra_fleet.c): register only */

    rc = parse(RA_MSG_REGISTER, "{" U ",\"deregister\":true}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "register: deregister true");
    RA_OK(msg.deregister, "register: deregister set");

    rc = parse(RA_MSG_REGISTER, "{" U ",\"deregister\":null}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "register: deregister null");
    RA_OK(!msg.deregister, "register: deregister null is absent");

    rc = parse(RA_MSG_REGISTER, "{" U ",\"deregister\":1}", &msg);
    RA_IS_INT(rc, RA_MSG_ERR_TYPE, "register: deregister 1 is a type error");

    rc = parse(RA_MSG_SIGNALING,
               "{" U ",\"connections\":1,\"deregister\":true}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: deregister ignored");
    RA_OK(!msg.deregister, "signaling: deregister not set");

    /* a stopping backend that could not count: draining only */

    rc = parse(RA_MSG_SIGNALING, "{" U ",\"draining\":true}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: draining without load");
    RA_OK(msg.has_draining && msg.draining && !msg.has_connections
          && !msg.has_cpu, "signaling: only draining present");

    rc = parse(RA_MSG_SIGNALING, "{" U ",\"draining\":false,\"capacity\":9}",
               &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: draining false without load");

    /* as ra-agent writes it */

    rc = parse(RA_MSG_SIGNALING,
               "{\"url\":\"ws://10.0.0.11:3000\",\"connections\":17,"
               "\"cpu\":12.3,\"capacity\":800,\"draining\":false}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: ra-agent's message");
    RA_IS_INT(msg.cpu, 1230, "signaling: cpu 12.3 is 1230");

    /* order, whitespace, unknown fields */

    rc = parse(RA_MSG_SIGNALING,
               " \t\r\n{ \"connections\" : 7 ,\n\"version\":\"2.1\","
               "\"rooms\":[1,2,{\"a\":null}],\"meta\":{\"x\":[true,false]},"
               "\"note\":\"caf\\u00e9 \xe2\x82\xac\",\"big\":1.5e300,"
               "\"url\":\"wss://sock.example.com/ws\"}\n ", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: unknown fields, any order");
    RA_IS_INT(msg.connections, 7, "signaling: connections after unknowns");
    RA_OK(strcmp(msg.url, "wss://sock.example.com/ws") == 0,
          "signaling: url last");

    rc = parse(RA_MSG_REGISTER,
               "{" U ",\"capacity\":2000,\"connections\":3,\"cpu\":1}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "register: optional fields allowed");
    RA_OK(msg.has_capacity && msg.capacity == 2000,
          "register: capacity read");
    RA_OK(msg.has_connections && msg.connections == 3 && msg.has_cpu
          && msg.cpu == 100, "register: connections and cpu read");

    /* null means absent */

    rc = parse(RA_MSG_SIGNALING,
               "{" U ",\"connections\":5,\"cpu\":null,\"capacity\":null,"
               "\"draining\":null}", &msg);
    RA_IS_INT(rc, RA_MSG_OK, "signaling: null optional fields");
    RA_OK(msg.has_connections && !msg.has_cpu && !msg.has_capacity
          && !msg.has_draining, "signaling: null fields are absent");

    /* detail may be NULL; on success it says ok */

    rc = ra_msg_parse(RA_MSG_REGISTER, "{" U "}", strlen("{" U "}"), &msg,
                      NULL);
    RA_IS_INT(rc, RA_MSG_OK, "detail may be NULL");

    detail = NULL;
    rc = ra_msg_parse(RA_MSG_REGISTER, "{" U "}", strlen("{" U "}"), &msg,
                      &detail);
    RA_OK(rc == RA_MSG_OK && detail != NULL && strcmp(detail, "ok") == 0,
          "detail is \"ok\" on success");

    /* not NUL-terminated: only len bytes are read */

    rc = ra_msg_parse(RA_MSG_SIGNALING,
                      "{" U ",\"connections\":1}garbage",
                      strlen("{" U ",\"connections\":1}"), &msg, &detail);
    RA_IS_INT(rc, RA_MSG_OK, "only len bytes are parsed");

    /* the parse starts from a clean struct */

    memset(&msg, 0xff, sizeof(msg));
    rc = parse(RA_MSG_SIGNALING, "{" U ",\"cpu\":1}", &msg);
    RA_OK(rc == RA_MSG_OK && !msg.has_connections && msg.connections == 0
          && !msg.has_capacity && msg.capacity == 0 && !msg.draining,
          "msg is cleared before parsing");
}


static void
test_numbers(void)
{
    size_t         i;
    ra_msg_t       msg;
    ra_msg_err_e   rc;
    char           name[160];

    static const struct {
        const char    *json;
        ra_msg_err_e   err;
        uint32_t       connections;
    } conns[] = {
        { "0", RA_MSG_OK, 0 },
        { "-0", RA_MSG_OK, 0 },
        { "1", RA_MSG_OK, 1 },
        { "1000000000", RA_MSG_OK, 1000000000 },
        { "42.0", RA_MSG_OK, 42 },
        { "4.2e1", RA_MSG_OK, 42 },
        { "1E9", RA_MSG_OK, 1000000000 },
        { "-0.0", RA_MSG_OK, 0 },
        { "1000000001", RA_MSG_ERR_RANGE, 0 },
        { "1000000000.5", RA_MSG_ERR_RANGE, 0 },
        { "4294967296", RA_MSG_ERR_RANGE, 0 },
        { "4294967338", RA_MSG_ERR_RANGE, 0 },
        { "9223372036854775807", RA_MSG_ERR_RANGE, 0 },
        { "-9223372036854775808", RA_MSG_ERR_RANGE, 0 },
        { "99999999999999999999", RA_MSG_ERR_RANGE, 0 },
        { "-99999999999999999999", RA_MSG_ERR_RANGE, 0 },
        { "1e400", RA_MSG_ERR_RANGE, 0 },
        { "-1e400", RA_MSG_ERR_RANGE, 0 },
        { "1e10", RA_MSG_ERR_RANGE, 0 },
        { "-1", RA_MSG_ERR_RANGE, 0 },
        { "-0.5", RA_MSG_ERR_RANGE, 0 },
        { "42.5", RA_MSG_ERR_RANGE, 0 },
        { "0.1", RA_MSG_ERR_RANGE, 0 },
        { "\"5\"", RA_MSG_ERR_TYPE, 0 },
        { "\"\"", RA_MSG_ERR_TYPE, 0 },
        { "true", RA_MSG_ERR_TYPE, 0 },
        { "false", RA_MSG_ERR_TYPE, 0 },
        { "[5]", RA_MSG_ERR_TYPE, 0 },
        { "{}", RA_MSG_ERR_TYPE, 0 },
        { "{\"n\":5}", RA_MSG_ERR_TYPE, 0 },
        { "NaN", RA_MSG_ERR_JSON, 0 },
        { "nan", RA_MSG_ERR_JSON, 0 },
        { "Infinity", RA_MSG_ERR_JSON, 0 },
        { "-Infinity", RA_MSG_ERR_JSON, 0 },
        { "0x10", RA_MSG_ERR_JSON, 0 },
        { "010", RA_MSG_ERR_JSON, 0 },
        { "+1", RA_MSG_ERR_JSON, 0 },
        { ".5", RA_MSG_ERR_JSON, 0 },
        { "1.", RA_MSG_ERR_JSON, 0 },
        { "1e", RA_MSG_ERR_JSON, 0 }
    };

    static const struct {
        const char    *json;
        ra_msg_err_e   err;
        uint32_t       cpu;
    } cpus[] = {
        { "0", RA_MSG_OK, 0 },
        { "0.0", RA_MSG_OK, 0 },
        { "-0.0", RA_MSG_OK, 0 },
        { "0.01", RA_MSG_OK, 1 },
        { "0.004", RA_MSG_OK, 0 },
        { "1", RA_MSG_OK, 100 },
        { "33.333", RA_MSG_OK, 3333 },
        { "37.5", RA_MSG_OK, 3750 },
        { "99.999", RA_MSG_OK, 10000 },
        { "100", RA_MSG_OK, 10000 },
        { "100.0", RA_MSG_OK, 10000 },
        { "1e2", RA_MSG_OK, 10000 },
        { "100.0001", RA_MSG_ERR_RANGE, 0 },
        { "101", RA_MSG_ERR_RANGE, 0 },
        { "-1", RA_MSG_ERR_RANGE, 0 },
        { "-0.01", RA_MSG_ERR_RANGE, 0 },
        { "1e400", RA_MSG_ERR_RANGE, 0 },
        { "99999999999999999999", RA_MSG_ERR_RANGE, 0 },
        { "\"37.5\"", RA_MSG_ERR_TYPE, 0 },
        { "true", RA_MSG_ERR_TYPE, 0 },
        { "[]", RA_MSG_ERR_TYPE, 0 },
        { "NaN", RA_MSG_ERR_JSON, 0 }
    };

    static const struct {
        const char    *json;
        ra_msg_err_e   err;
        uint32_t       capacity;
    } caps[] = {
        { "1", RA_MSG_OK, 1 },
        { "1.0", RA_MSG_OK, 1 },
        { "1000000000", RA_MSG_OK, 1000000000 },
        { "0", RA_MSG_ERR_RANGE, 0 },
        { "-0", RA_MSG_ERR_RANGE, 0 },
        { "0.0", RA_MSG_ERR_RANGE, 0 },
        { "0.5", RA_MSG_ERR_RANGE, 0 },
        { "1.5", RA_MSG_ERR_RANGE, 0 },
        { "-1", RA_MSG_ERR_RANGE, 0 },
        { "1000000001", RA_MSG_ERR_RANGE, 0 },
        { "4294967297", RA_MSG_ERR_RANGE, 0 },
        { "\"100\"", RA_MSG_ERR_TYPE, 0 },
        { "false", RA_MSG_ERR_TYPE, 0 }
    };

    static const struct {
        const char    *json;
        ra_msg_err_e   err;
        unsigned       draining;
    } drains[] = {
        { "true", RA_MSG_OK, 1 },
        { "false", RA_MSG_OK, 0 },
        { "1", RA_MSG_ERR_TYPE, 0 },
        { "0", RA_MSG_ERR_TYPE, 0 },
        { "\"true\"", RA_MSG_ERR_TYPE, 0 },
        { "[]", RA_MSG_ERR_TYPE, 0 },
        { "True", RA_MSG_ERR_JSON, 0 }
    };

    char  buf[256];

    for (i = 0; i < sizeof(conns) / sizeof(conns[0]); i++) {
        snprintf(buf, sizeof(buf), "{" U ",\"connections\":%s}",
                 conns[i].json);
        rc = parse(RA_MSG_SIGNALING, buf, &msg);
        snprintf(name, sizeof(name), "connections %s: %s", conns[i].json,
                 ra_msg_err_name(conns[i].err));
        RA_IS_INT(rc, conns[i].err, name);

        if (rc == RA_MSG_OK && conns[i].err == RA_MSG_OK) {
            snprintf(name, sizeof(name), "connections %s: value",
                     conns[i].json);
            RA_IS_INT(msg.connections, conns[i].connections, name);
        }
    }

    for (i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++) {
        snprintf(buf, sizeof(buf), "{" U ",\"cpu\":%s}", cpus[i].json);
        rc = parse(RA_MSG_SIGNALING, buf, &msg);
        snprintf(name, sizeof(name), "cpu %s: %s", cpus[i].json,
                 ra_msg_err_name(cpus[i].err));
        RA_IS_INT(rc, cpus[i].err, name);

        if (rc == RA_MSG_OK && cpus[i].err == RA_MSG_OK) {
            snprintf(name, sizeof(name), "cpu %s: value", cpus[i].json);
            RA_IS_INT(msg.cpu, cpus[i].cpu, name);
        }
    }

    for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        snprintf(buf, sizeof(buf), "{" U ",\"connections\":1,\"capacity\":%s}",
                 caps[i].json);
        rc = parse(RA_MSG_SIGNALING, buf, &msg);
        snprintf(name, sizeof(name), "capacity %s: %s", caps[i].json,
                 ra_msg_err_name(caps[i].err));
        RA_IS_INT(rc, caps[i].err, name);

        if (rc == RA_MSG_OK && caps[i].err == RA_MSG_OK) {
            snprintf(name, sizeof(name), "capacity %s: value", caps[i].json);
            RA_IS_INT(msg.capacity, caps[i].capacity, name);
        }
    }

    for (i = 0; i < sizeof(drains) / sizeof(drains[0]); i++) {
        snprintf(buf, sizeof(buf), "{" U ",\"connections\":1,\"draining\":%s}",
                 drains[i].json);
        rc = parse(RA_MSG_SIGNALING, buf, &msg);
        snprintf(name, sizeof(name), "draining %s: %s", drains[i].json,
                 ra_msg_err_name(drains[i].err));
        RA_IS_INT(rc, drains[i].err, name);

        if (rc == RA_MSG_OK && drains[i].err == RA_MSG_OK) {
            snprintf(name, sizeof(name), "draining %s: value",
                     drains[i].json);
            RA_IS_INT(msg.draining, drains[i].draining, name);
        }
    }

    /* the fields are checked in register messages too */

    rc = parse(RA_MSG_REGISTER, "{" U ",\"connections\":\"5\"}", &msg);
    RA_IS_INT(rc, RA_MSG_ERR_TYPE, "register: connections type checked");
    rc = parse(RA_MSG_REGISTER, "{" U ",\"capacity\":0}", &msg);
    RA_IS_INT(rc, RA_MSG_ERR_RANGE, "register: capacity range checked");
    rc = parse(RA_MSG_REGISTER, "{" U ",\"draining\":1}", &msg);
    RA_IS_INT(rc, RA_MSG_ERR_TYPE, "register: draining type checked");
}


static void
test_rejections(void)
{
    char          *p;
    size_t         i;
    ra_msg_t       msg;
    const char    *detail;
    ra_msg_err_e   rc;
    char           name[200];

    static const case_t  cases[] = {

        /* not JSON, not an object */
        { RA_MSG_SIGNALING, "", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, " ", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "null", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "42", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "\"ws://10.0.0.11:3000\"", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "true", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "[]", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "[{" U ",\"connections\":1}]", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U, RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1,}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1} x", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1}{}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1}}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{'url':'ws://10.0.0.11:3000'}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{url:\"ws://10.0.0.11:3000\"}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "/* c */{" U ",\"cpu\":1}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1 // c\n}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "\xef\xbb\xbf{" U ",\"cpu\":1}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\xff\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\xc0\xaf\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\xed\xa0\x80\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\\ud800\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\\u0000\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\\u0000\":1}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://10.0.0.11:3000\\u0000x\","
          "\"cpu\":1}", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"a\tb\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":\"\\q\"}",
          RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "\x01\x02\x03", RA_MSG_ERR_JSON },
        { RA_MSG_SIGNALING, "\x80\xff\xfe{}", RA_MSG_ERR_JSON },

        /* duplicate keys, wherever they are */
        { RA_MSG_SIGNALING, "{" U "," U ",\"connections\":1}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1\",\"url\":\"ws://b:1\","
          "\"connections\":1}", RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":1,\"connections\":2}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"cpu\":1}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":1,\"x\":1}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":{\"a\":1,\"a\":2}}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_SIGNALING, "{" U ",\"cpu\":1,\"x\":[{\"a\":1,\"a\":1}]}",
          RA_MSG_ERR_DUP_KEY },
        { RA_MSG_REGISTER, "{" U "," U "}", RA_MSG_ERR_DUP_KEY },

        /* url */
        { RA_MSG_SIGNALING, "{\"connections\":1}", RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{}", RA_MSG_ERR_URL },
        { RA_MSG_REGISTER, "{}", RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"URL\":\"ws://10.0.0.11:3000\","
          "\"connections\":1}", RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":null,\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":3000,\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":true,\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":[\"ws://a:1\"],\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":{\"host\":\"a\"},\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\" ws://a:1\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1 \",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1/a b\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1\\t\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1\\n\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1\\u007f\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:1/\\u00e9\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://\xc3\xa9:1\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ftp://a:21\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://u:p@a:1\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:0\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"ws://a:65536\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_SIGNALING, "{\"url\":\"a\",\"connections\":1}",
          RA_MSG_ERR_URL },
        { RA_MSG_REGISTER, "{\"url\":\"10.0.0.11\"}", RA_MSG_ERR_URL },
        { RA_MSG_REGISTER, "{\"url\":\"ws://[::1\"}", RA_MSG_ERR_URL },

        /* a url is checked before the other fields */
        { RA_MSG_SIGNALING, "{\"url\":1,\"connections\":\"x\"}",
          RA_MSG_ERR_URL },

        /* missing load */
        { RA_MSG_SIGNALING, "{" U "}", RA_MSG_ERR_MISSING },
        { RA_MSG_SIGNALING, "{" U ",\"capacity\":10}", RA_MSG_ERR_MISSING },
        { RA_MSG_SIGNALING, "{" U ",\"draining\":null}", RA_MSG_ERR_MISSING },
        { RA_MSG_SIGNALING, "{" U ",\"connections\":null,\"cpu\":null}",
          RA_MSG_ERR_MISSING },
        { RA_MSG_SIGNALING, "{" U ",\"Connections\":5}", RA_MSG_ERR_MISSING },
        { RA_MSG_SIGNALING, "{" U ",\"load\":{\"connections\":5}}",
          RA_MSG_ERR_MISSING },

        /* an unknown message type */
        { (ra_msg_type_e) 7, "{" U ",\"connections\":1}", RA_MSG_ERR_TYPE }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        detail = NULL;
        rc = ra_msg_parse(cases[i].type, cases[i].json,
                          strlen(cases[i].json), &msg, &detail);
        snprintf(name, sizeof(name), "%s %.80s: %s",
                 cases[i].type == RA_MSG_REGISTER ? "register" : "signaling",
                 cases[i].json, ra_msg_err_name(cases[i].err));

        /* keep TAP lines on one line */
        for (p = name; *p; p++) {
            if ((unsigned char) *p < ' ' || *p == '#') {
                *p = '?';
            }
        }

        RA_IS_INT(rc, cases[i].err, name);
        RA_OK(detail != NULL && detail[0] != '\0', "  with a detail");
    }

    /* raw NUL bytes */

    rc = ra_msg_parse(RA_MSG_SIGNALING, "{" U ",\"cpu\":1}\0",
                      strlen("{" U ",\"cpu\":1}") + 1, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "trailing NUL byte: json");

    rc = ra_msg_parse(RA_MSG_SIGNALING, "{\"url\":\"ws://a:1\0\",\"cpu\":1}",
                      27, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "NUL byte in a string: json");

    rc = ra_msg_parse(RA_MSG_SIGNALING, "\0", 1, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "a lone NUL byte: json");

    rc = ra_msg_parse(RA_MSG_SIGNALING, NULL, 0, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "NULL data: json");
}


static void
test_limits(void)
{
    int            n;
    char          *buf;
    size_t         len;
    ra_msg_t       msg;
    const char    *detail;
    ra_msg_err_e   rc;
    char           url[RA_MSG_URL_MAX + 2];

    buf = malloc(RA_MSG_MAX_LEN + 64);
    if (buf == NULL) {
        RA_OK(0, "malloc");
        return;
    }

    /* exactly RA_MSG_MAX_LEN bytes: accepted */

    n = snprintf(buf, RA_MSG_MAX_LEN + 64, "{" U ",\"connections\":1,"
                 "\"pad\":\"");
    len = RA_MSG_MAX_LEN - n - 2;
    memset(buf + n, 'x', len);
    memcpy(buf + n + len, "\"}", 2);

    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_OK, "message of RA_MSG_MAX_LEN bytes accepted");

    /* one more byte: too large, even though it is valid JSON */

    memcpy(buf + n + len, "x\"}", 3);

    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN + 1, &msg,
                      &detail);
    RA_IS_INT(rc, RA_MSG_ERR_TOO_LARGE, "RA_MSG_MAX_LEN + 1 bytes: too_large");

    /* the size is checked before anything else */

    memset(buf, 0xff, RA_MSG_MAX_LEN + 1);
    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN + 1, &msg,
                      &detail);
    RA_IS_INT(rc, RA_MSG_ERR_TOO_LARGE, "large junk: too_large");

    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, (size_t) -1, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_TOO_LARGE, "SIZE_MAX length: too_large");

    memset(buf, 0xff, RA_MSG_MAX_LEN);
    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "junk of RA_MSG_MAX_LEN bytes: json");

    /* nesting: deep enough to hit jansson's limit, or just deep */

    memset(buf, '[', RA_MSG_MAX_LEN);
    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "4096 nested arrays: json");

    memset(buf, '{', RA_MSG_MAX_LEN);
    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, RA_MSG_MAX_LEN, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_JSON, "4096 open braces: json");

    n = snprintf(buf, RA_MSG_MAX_LEN + 64, "{" U ",\"connections\":3,\"x\":");
    memset(buf + n, '[', 1000);
    memset(buf + n + 1000, ']', 1000);
    memcpy(buf + n + 2000, "}", 1);

    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, n + 2001, &msg, &detail);
    RA_IS_INT(rc, RA_MSG_OK, "1000 nested arrays in an unknown field: ok");

    /* the url: RA_MSG_URL_MAX bytes accepted, one more rejected */

    memcpy(url, "ws://", 5);
    memset(url + 5, 'a', RA_MSG_URL_MAX - 10);
    memcpy(url + RA_MSG_URL_MAX - 5, ":3000", 6);

    RA_IS_INT(strlen(url), RA_MSG_URL_MAX, "long url is RA_MSG_URL_MAX bytes");

    snprintf(buf, RA_MSG_MAX_LEN, "{\"url\":\"%s\",\"connections\":1}", url);
    rc = parse(RA_MSG_SIGNALING, buf, &msg);
    RA_IS_INT(rc, RA_MSG_OK, "url of RA_MSG_URL_MAX bytes accepted");
    RA_IS_INT(msg.url_len, RA_MSG_URL_MAX, "  url_len");
    RA_OK(strcmp(msg.url, url) == 0, "  url copied whole");

    memcpy(url + RA_MSG_URL_MAX - 5, "a:3000", 7);
    snprintf(buf, RA_MSG_MAX_LEN, "{\"url\":\"%s\",\"connections\":1}", url);
    rc = ra_msg_parse(RA_MSG_SIGNALING, buf, strlen(buf), &msg, &detail);
    RA_IS_INT(rc, RA_MSG_ERR_URL, "url of RA_MSG_URL_MAX + 1 bytes: url");
    RA_OK(strstr(detail, "longer") != NULL, "  detail says it is too long");

    free(buf);
}


static void
test_hostport(void)
{
    int     n;
    char   *p;
    size_t  i;
    char    buf[RA_MSG_HOSTPORT_LEN];
    char    url[RA_MSG_URL_MAX + 2];
    char    name[200];

    static const url_case_t  cases[] = {
        { "ws://10.0.0.11:3000", "10.0.0.11:3000" },
        { "ws://10.0.0.11:3000/", "10.0.0.11:3000" },
        { "ws://10.0.0.11:3000/socket.io/?EIO=4&transport=websocket",
          "10.0.0.11:3000" },
        { "ws://10.0.0.11", "10.0.0.11:80" },
        { "ws://10.0.0.11/", "10.0.0.11:80" },
        { "wss://10.0.0.11", "10.0.0.11:443" },
        { "http://10.0.0.11", "10.0.0.11:80" },
        { "https://10.0.0.11", "10.0.0.11:443" },
        { "https://10.0.0.11:8443", "10.0.0.11:8443" },
        { "WS://Backend-1.Example.COM:3000", "backend-1.example.com:3000" },
        { "HtTpS://H", "h:443" },
        { "wSs://sock.example.com./x", "sock.example.com.:443" },
        { "ws://socket_server_1:3000", "socket_server_1:3000" },
        { "ws://h:1?x=1", "h:1" },
        { "ws://h?x=1", "h:80" },
        { "ws://h#frag", "h:80" },
        { "ws://h:00080", "h:80" },
        { "ws://h:65535", "h:65535" },
        { "ws://h:1", "h:1" },
        { "ws://h/a://b@c", "h:80" },
        { "ws://[::1]:3000", "[::1]:3000" },
        { "ws://[::1]", "[::1]:80" },
        { "wss://[::1]/x", "[::1]:443" },
        { "ws://[0:0:0:0:0:0:0:1]:3000", "[::1]:3000" },
        { "ws://[FE80::A]:1", "[fe80::a]:1" },
        { "ws://[2001:DB8:0:0:1:0:0:1]:9", "[2001:db8::1:0:0:1]:9" },
        { "ws://[::ffff:10.0.0.1]:5", "[::ffff:10.0.0.1]:5" },
        { "10.0.0.11:3000", "10.0.0.11:3000" },
        { "localhost:3000", "localhost:3000" },
        { "LocalHost:3000", "localhost:3000" },
        { "[::1]:3000", "[::1]:3000" },

        { "", NULL },
        { "ws://", NULL },
        { "ws:///x", NULL },
        { "ws://:3000", NULL },
        { "ws:/h:1", NULL },
        { "ws//h:1", NULL },
        { "://h:1", NULL },
        { "ftp://h", NULL },
        { "wsx://h", NULL },
        { "ws ://h", NULL },
        { "file:///etc/passwd", NULL },
        { "javascript://h:1", NULL },
        { "ws://user@h:1", NULL },
        { "ws://user:pw@h:1", NULL },
        { "ws://@h:1", NULL },
        { "ws://h:0", NULL },
        { "ws://h:00000", NULL },
        { "ws://h:65536", NULL },
        { "ws://h:99999", NULL },
        { "ws://h:000080", NULL },
        { "ws://h:123456", NULL },
        { "ws://h:", NULL },
        { "ws://h:/x", NULL },
        { "ws://h:-1", NULL },
        { "ws://h:+1", NULL },
        { "ws://h:3000x", NULL },
        { "ws://h:3000:4000", NULL },
        { "ws://h x:1", NULL },
        { "ws://h\t:1", NULL },
        { "ws://h:1\x7f", NULL },
        { "ws://h:1/\x80", NULL },
        { "ws://\xc3\xa9:1", NULL },
        { "ws://h%41:1", NULL },
        { "ws://h;x:1", NULL },
        { "ws://h\\x:1", NULL },
        { "ws://[::1", NULL },
        { "ws://[]:1", NULL },
        { "ws://[zz::1]:1", NULL },
        { "ws://[10.0.0.1]:1", NULL },
        { "ws://[::1]x", NULL },
        { "ws://[::1]:", NULL },
        { "ws://[::1]:0", NULL },
        { "ws://[fe80::1%25eth0]:1", NULL },
        { "ws://[v1.x]:1", NULL },
        { "ws://[[::1]]:1", NULL },
        { "ws://::1:3000", NULL },
        { "h", NULL },
        { "10.0.0.11", NULL },
        { "h:3000/path", NULL },
        { "h:3000?x", NULL },
        { "[::1]", NULL },
        { ":3000", NULL }
    };

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(buf, 'Z', sizeof(buf));
        n = ra_msg_url_hostport(cases[i].url, strlen(cases[i].url), buf,
                                sizeof(buf));

        snprintf(name, sizeof(name), "hostport %s -> %s", cases[i].url,
                 cases[i].hostport ? cases[i].hostport : "unusable");

        for (p = name; *p; p++) {
            if ((unsigned char) *p < ' ' || (unsigned char) *p >= 0x7f
                || *p == '#')
            {
                *p = '?';
            }
        }

        if (cases[i].hostport == NULL) {
            RA_IS_INT(n, -1, name);

        } else {
            RA_OK(n >= 0 && (size_t) n == strlen(cases[i].hostport)
                  && strcmp(buf, cases[i].hostport) == 0, name);

            if (n < 0 || strcmp(buf, cases[i].hostport) != 0) {
                printf("#   got %d \"%s\"\n", n, n < 0 ? "" : buf);
            }
        }
    }

    /* only len bytes are read */

    n = ra_msg_url_hostport("ws://h:12345", 9, buf, sizeof(buf));
    RA_OK(n == 4 && strcmp(buf, "h:12") == 0, "hostport reads len bytes");

    n = ra_msg_url_hostport("ws://h:1\0/x", 11, buf, sizeof(buf));
    RA_IS_INT(n, -1, "hostport: NUL byte inside len");

    n = ra_msg_url_hostport(NULL, 5, buf, sizeof(buf));
    RA_IS_INT(n, -1, "hostport: NULL url");

    /* the output buffer */

    n = ra_msg_url_hostport("ws://h:1", 8, buf, 4);
    RA_OK(n == 3 && strcmp(buf, "h:1") == 0, "hostport: exact buffer");

    n = ra_msg_url_hostport("ws://h:1", 8, buf, 3);
    RA_IS_INT(n, -1, "hostport: buffer one byte short");

    n = ra_msg_url_hostport("ws://h:1", 8, buf, 0);
    RA_IS_INT(n, -1, "hostport: empty buffer");

    n = ra_msg_url_hostport("ws://h:1", 8, NULL, 0);
    RA_IS_INT(n, -1, "hostport: NULL buffer");

    /* the longest urls fit RA_MSG_HOSTPORT_LEN */

    memcpy(url, "ws://", 5);
    memset(url + 5, 'A', RA_MSG_URL_MAX - 5);
    url[RA_MSG_URL_MAX] = '\0';

    n = ra_msg_url_hostport(url, RA_MSG_URL_MAX, buf, sizeof(buf));
    RA_IS_INT(n, RA_MSG_URL_MAX - 5 + 3, "hostport: longest host, port 80");
    RA_OK(n > 0 && buf[0] == 'a' && strcmp(buf + n - 3, ":80") == 0,
          "  host lowercased, default port");

    memset(url, 'b', RA_MSG_URL_MAX - 6);
    memcpy(url + RA_MSG_URL_MAX - 6, ":65535", 7);

    n = ra_msg_url_hostport(url, RA_MSG_URL_MAX, buf, sizeof(buf));
    RA_IS_INT(n, RA_MSG_URL_MAX, "hostport: longest bare host:port");

    memset(url, 'b', RA_MSG_URL_MAX - 5);
    memcpy(url + RA_MSG_URL_MAX - 5, ":65535", 7);

    n = ra_msg_url_hostport(url, RA_MSG_URL_MAX + 1, buf, sizeof(buf));
    RA_IS_INT(n, -1, "hostport: url longer than RA_MSG_URL_MAX");
}


/* random input must never crash, and what is accepted must be sane */

static void
test_fuzz(void)
{
    int            bad, ok, k, m;
    char           buf[512], out[RA_MSG_HOSTPORT_LEN];
    size_t         i, j, len, tlen;
    ra_msg_t       msg;
    const char    *detail, *tok;
    ra_msg_err_e   rc;

    static const char  *valid[] = {
        "{\"url\":\"ws://10.0.0.11:3000\"}",
        "{\"url\":\"ws://10.0.0.11:3000\",\"connections\":42}",
        ("{\"url\": \"wss://[::1]:8443/ws\", \"connections\": 42,"
         " \"cpu\": 37.5, \"capacity\": 500, \"draining\": false}"),
        "{\"connections\":0,\"x\":[1,{\"y\":null}],\"url\":\"h:1\"}"
    };

    static const char  *tokens[] = {
        "{", "}", "[", "]", ":", ",", " ", "\"url\"", "\"connections\"",
        "\"cpu\"", "\"capacity\"", "\"draining\"", "\"x\"",
        "\"ws://10.0.0.11:3000\"", "\"wss://[::1]\"", "\"h:1\"", "\"\"",
        "0", "1", "-1", "42", "37.5", "1e400", "1e9", "1000000001",
        "99999999999999999999", "4294967296", "-0", "100.5", "true",
        "false", "null", "\"\\u0000\"", "\"\\ud800\"", "\"\xff\"", "\\",
        "\"", "NaN", "\x00", "\xc3\xa9"
    };

    /* random bytes */

    bad = 0;

    for (k = 0; k < iterations; k++) {
        len = rnd() % 96;

        for (i = 0; i < len; i++) {
            buf[i] = (char) rnd();
        }

        if (!sane(buf, len, (ra_msg_type_e) (k & 1))) {
            bad++;
        }
    }

    RA_IS_INT(bad, 0, "fuzz: random byte strings");

    /* random sequences of JSON-ish tokens */

    bad = 0;

    for (k = 0; k < iterations; k++) {
        len = 0;

        if (rnd() % 4) {
            buf[len++] = '{';
        }

        m = rnd() % 12;

        for (j = 0; j < (size_t) m; j++) {
            tok = tokens[rnd() % (sizeof(tokens) / sizeof(tokens[0]))];
            tlen = (tok[0] == '\0') ? 1 : strlen(tok);

            if (len + tlen >= sizeof(buf)) {
                break;
            }

            memcpy(buf + len, tok, tlen);
            len += tlen;
        }

        if (rnd() % 4 && len < sizeof(buf)) {
            buf[len++] = '}';
        }

        if (!sane(buf, len, (ra_msg_type_e) (k & 1))) {
            bad++;
        }
    }

    RA_IS_INT(bad, 0, "fuzz: token sequences");

    /* random objects of known and unknown keys and assorted values */

    bad = 0;
    ok = 0;

    for (k = 0; k < iterations; k++) {
        static const char  *keys[] = {
            "\"connections\"", "\"cpu\"", "\"capacity\"", "\"draining\"",
            "\"x\"", "\"url\"", "\"URL\""
        };

        static const char  *values[] = {
            "1", "42", "37.5", "100", "1e9", "-0", "null", "true",

            /* wrong for most keys */
            "\"ws://10.0.0.11:3000\"", "\"h:1\"", "\"ftp://h\"", "\"\"",
            "0", "-1", "101", "1000000001", "4294967296", "0.5", "1e400",
            "false", "\"5\"", "[]", "{}", "[1,{\"a\":2}]"
        };

        len = 0;
        buf[len++] = '{';

        if (rnd() % 2) {
            tok = "\"url\":\"wss://h\",";
            tlen = strlen(tok);
            memcpy(buf + len, tok, tlen);
            len += tlen;
        }

        for (m = rnd() % 4; m > 0; m--) {
            j = (rnd() % 4) ? 5 : sizeof(keys) / sizeof(keys[0]);
            tok = keys[rnd() % j];
            tlen = strlen(tok);
            memcpy(buf + len, tok, tlen);
            len += tlen;
            buf[len++] = ':';

            j = (rnd() % 4) ? 8 : sizeof(values) / sizeof(values[0]);
            tok = values[rnd() % j];
            tlen = strlen(tok);
            memcpy(buf + len, tok, tlen);
            len += tlen;
            buf[len++] = ',';
        }

        if (len > 1) {
            len--;
        }

        buf[len++] = '}';

        if (!sane(buf, len, (ra_msg_type_e) (k & 1))) {
            bad++;
        }

        if (ra_msg_parse((ra_msg_type_e) (k & 1), buf, len, &msg, &detail)
            == RA_MSG_OK)
        {
            ok++;
        }
    }

    RA_IS_INT(bad, 0, "fuzz: random objects");
    printf("#   %d of them accepted\n", ok);

    /* every truncation of a valid message is invalid JSON */

    bad = 0;

    for (k = 0; k < (int) (sizeof(valid) / sizeof(valid[0])); k++) {
        len = strlen(valid[k]);

        rc = ra_msg_parse(RA_MSG_REGISTER, valid[k], len, &msg, &detail);
        if (rc != RA_MSG_OK) {
            bad++;
        }

        for (i = 0; i < len; i++) {
            rc = ra_msg_parse(RA_MSG_REGISTER, valid[k], i, &msg, &detail);
            if (rc != RA_MSG_ERR_JSON) {
                bad++;
            }
        }
    }

    RA_IS_INT(bad, 0, "fuzz: every truncation of a valid message is json");

    /* random mutations of valid messages */

    bad = 0;

    for (k = 0; k < iterations; k++) {
        tok = valid[rnd() % (sizeof(valid) / sizeof(valid[0]))];
        len = strlen(tok);
        memcpy(buf, tok, len);

        for (m = 1 + rnd() % 4; m > 0; m--) {
            i = rnd() % (len + 1);

            switch (rnd() % 3) {

            case 0:                                         /* replace */
                if (i < len) {
                    buf[i] = (char) rnd();
                }
                break;

            case 1:                                         /* insert */
                if (len + 1 < sizeof(buf)) {
                    memmove(buf + i + 1, buf + i, len - i);
                    buf[i] = (char) rnd();
                    len++;
                }
                break;

            default:                                        /* delete */
                if (i < len) {
                    memmove(buf + i, buf + i + 1, len - i - 1);
                    len--;
                }
                break;
            }
        }

        if (!sane(buf, len, (ra_msg_type_e) (k & 1))) {
            bad++;
        }
    }

    RA_IS_INT(bad, 0, "fuzz: mutated valid messages");

    /* random urls */

    bad = 0;
    ok = 0;

    for (k = 0; k < iterations; k++) {
        static const char  *parts[] = {
            "ws://", "wss://", "HTTP://", "https://", "ftp://", "://", "[",
            "]", "::1", ":", "1", "80", "65535", "65536", "0", "h", "H.example",
            "@", "/", "?", "#", "%", " ", "10.0.0.1", "fe80::", "\t", "\xff"
        };

        len = 0;

        for (m = rnd() % 8; m > 0; m--) {
            tok = parts[rnd() % (sizeof(parts) / sizeof(parts[0]))];
            tlen = strlen(tok);
            memcpy(buf + len, tok, tlen);
            len += tlen;
        }

        memset(out, 'Z', sizeof(out));
        m = ra_msg_url_hostport(buf, len, out, sizeof(out));

        if (m >= 0) {
            ok++;

            if ((size_t) m != strlen(out) || strchr(out, ':') == NULL
                || m >= RA_MSG_HOSTPORT_LEN)
            {
                bad++;
            }

            for (i = 0; i < (size_t) m; i++) {
                if (out[i] >= 'A' && out[i] <= 'Z') {
                    bad++;
                }
            }
        }
    }

    RA_IS_INT(bad, 0, "fuzz: random urls");
    printf("#   %d of them usable\n", ok);
}


/* the rooms channel: what the encoder writes, the parser reads back */

static void
test_room_codec(void)
{
    char            buf[2048], *big;
    size_t          len, i, n;
    const char     *detail;
    ra_msg_room_t   m, out;
    ra_msg_err_e    err;

    static const struct {
        const char  *msg;
        const char  *why;
    } bad[] = {
        { "1 00000000000000aa n up 127.0.0.1:1", "no newline" },
        { "1 00000000000000aa n up 127.0.0.1:1\n", "no room" },
        { "2 00000000000000aa n up 127.0.0.1:1\nroom", "version 2" },
        { "1 00000000000000a n up 127.0.0.1:1\nroom", "15 hex digits" },
        { "1 00000000000000ag n up 127.0.0.1:1\nroom", "not hex" },
        { "1 00000000000000aa x up 127.0.0.1:1\nroom", "kind x" },
        { "1 00000000000000aa c up 127.0.0.1:1\n-1", "negative count" },
        { "1 00000000000000aa nm up 127.0.0.1:1\nroom", "kind nm" },
        { "1 00000000000000aa n up\nroom", "four fields" },
        { "1 00000000000000aa n  up 127.0.0.1:1\nroom", "empty field" },
        { "1 00000000000000aa n up 127.0.0.1:1 x\nroom", "six fields" },
        { "", "empty" },
    };

    m.instance = 0x0123456789abcdefULL;
    m.kind = RA_MSG_ROOM_MOVED;
    m.upstream = "chat";
    m.upstream_len = 4;
    m.backend = "127.0.0.1:3001";
    m.backend_len = 14;
    m.room = "lobby 1\nwith a newline";
    m.room_len = strlen(m.room);

    len = ra_msg_room_encode(&m, buf);

    RA_IS_INT(len, ra_msg_room_size(&m), "room codec: size is exact");
    RA_OK(len == 41 + m.room_len
          && memcmp(buf, "1 0123456789abcdef m chat 127.0.0.1:3001\n", 41)
             == 0,
          "room codec: the documented layout");

    err = ra_msg_room_parse(buf, len, &out, &detail);

    RA_IS_INT(err, RA_MSG_OK, "room codec: parses what it encodes");
    RA_OK(out.instance == m.instance && out.kind == RA_MSG_ROOM_MOVED
          && out.upstream_len == 4 && memcmp(out.upstream, "chat", 4) == 0
          && out.backend_len == 14
          && memcmp(out.backend, "127.0.0.1:3001", 14) == 0
          && out.room_len == m.room_len
          && memcmp(out.room, m.room, m.room_len) == 0,
          "room codec: every field back, the room's newline kept");

    m.kind = RA_MSG_ROOM_NEW;
    len = ra_msg_room_encode(&m, buf);
    err = ra_msg_room_parse(buf, len, &out, &detail);
    RA_OK(err == RA_MSG_OK && out.kind == RA_MSG_ROOM_NEW,
          "room codec: a new room");

    m.kind = RA_MSG_ROOM_COUNT;
    m.room = "12345";
    m.room_len = 5;
    len = ra_msg_room_encode(&m, buf);
    err = ra_msg_room_parse(buf, len, &out, &detail);
    RA_OK(err == RA_MSG_OK && out.kind == RA_MSG_ROOM_COUNT
          && out.room_len == 5 && memcmp(out.room, "12345", 5) == 0,
          "room codec: a count");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n12 3", 29, &out,
                            &detail);
    RA_OK(err == RA_MSG_OK && out.room_len == 4,
          "room codec: a count and joins");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n12 ", 28, &out,
                            &detail);
    RA_IS_INT(err, RA_MSG_ERR_JSON,
              "room codec: rejects a count ending in a space");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n1 2 3", 30, &out,
                            &detail);
    RA_IS_INT(err, RA_MSG_ERR_JSON, "room codec: rejects three numbers");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n 12", 28, &out,
                            &detail);
    RA_IS_INT(err, RA_MSG_ERR_JSON, "room codec: rejects a leading space");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n12x", 28, &out,
                            &detail);
    RA_IS_INT(err, RA_MSG_ERR_JSON, "room codec: rejects a count not decimal");

    err = ra_msg_room_parse("1 0123456789abcdef c u b\n1234567890", 35,
                            &out, &detail);
    RA_IS_INT(err, RA_MSG_ERR_JSON,
              "room codec: rejects a count over 9 digits");

    m.room = "lobby 1\nwith a newline";
    m.room_len = strlen(m.room);

    err = ra_msg_room_parse("1 0123456789ABCDEF n u b\nr", 26, &out,
                            &detail);
    RA_OK(err == RA_MSG_OK && out.instance == 0x0123456789abcdefULL,
          "room codec: upper case hex");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char  name[128];

        err = ra_msg_room_parse(bad[i].msg, strlen(bad[i].msg), &out,
                                &detail);
        snprintf(name, sizeof(name), "room codec: rejects %s", bad[i].why);
        RA_IS_INT(err, RA_MSG_ERR_JSON, name);
    }

    /* every prefix of a valid message is rejected or parses in bounds */

    m.kind = RA_MSG_ROOM_MOVED;
    len = ra_msg_room_encode(&m, buf);
    n = 0;

    for (i = 0; i < len; i++) {
        big = malloc(i + 1);
        memcpy(big, buf, i);
        err = ra_msg_room_parse(big, i, &out, &detail);

        if (err == RA_MSG_OK
            && (out.room < big || out.room + out.room_len > big + i))
        {
            n++;
        }

        free(big);
    }

    RA_IS_INT(n, 0, "room codec: prefixes parse within their bytes");
}


int
main(void)
{
    const char  *env;

    /* RA_TEST_SEED=n replays another sequence, RA_TEST_ITER=n fuzzes more */

    env = getenv("RA_TEST_SEED");
    if (env != NULL && strtoull(env, NULL, 0) != 0) {
        rnd_state = strtoull(env, NULL, 0);
    }

    env = getenv("RA_TEST_ITER");
    if (env != NULL && atoi(env) > 0) {
        iterations = atoi(env);
    }

    test_err_names();
    test_valid();
    test_numbers();
    test_rejections();
    test_limits();
    test_hostport();
    test_fuzz();
    test_room_codec();

    return RA_DONE();
}
