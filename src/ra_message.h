/*
 * The formats of the Redis messages: the backends' register and signaling
 * messages (JSON, parsed), and the placements the nginx instances share
 * (encoded and parsed).  Plain C (jansson, no nginx headers).  Every
 * message is untrusted.
 */

#ifndef RA_MESSAGE_H
#define RA_MESSAGE_H

#include <stddef.h>
#include <stdint.h>


#pragma GCC visibility push(hidden)


#define RA_MSG_MAX_LEN       4096     /* larger messages are rejected */
#define RA_MSG_URL_MAX       256      /* longest url accepted, bytes */
#define RA_MSG_COUNT_MAX     1000000000   /* largest connections, capacity */
#define RA_MSG_CPU_MAX       10000    /* cpu 100 %, in 1/100 percent */

/* a buffer of this size holds the "host:port" of any accepted url */
#define RA_MSG_HOSTPORT_LEN  (RA_MSG_URL_MAX + 8)


typedef enum {
    RA_MSG_REGISTER = 0,
    RA_MSG_SIGNALING
} ra_msg_type_e;


/* why a message was rejected; RA_MSG_OK is 0 */
typedef enum {
    RA_MSG_OK = 0,
    RA_MSG_ERR_TOO_LARGE,
    RA_MSG_ERR_JSON,          /* not JSON, or binary junk, or not an object */
    RA_MSG_ERR_DUP_KEY,       /* the same key twice */
    RA_MSG_ERR_URL,           /* url missing, not a string, empty, too long,
                                 or not a usable url */
    RA_MSG_ERR_TYPE,          /* a known field with the wrong JSON type */
    RA_MSG_ERR_RANGE,         /* negative, too large, NaN, fractional count */
    RA_MSG_ERR_MISSING,       /* signaling without connections, cpu and
                                 draining */
    RA_MSG_ERR_SIGNATURE,     /* with a key configured: unsigned, badly
                                 signed or outside the window (ra_sign.c) */
    RA_MSG_ERR_COUNT          /* number of reasons, not a reason */
} ra_msg_err_e;


typedef struct {
    char        url[RA_MSG_URL_MAX + 1];   /* NUL-terminated copy */
    size_t      url_len;
    uint32_t    connections;
    uint32_t    cpu;              /* percent * 100 (0..10000) */
    uint32_t    capacity;
    unsigned    has_connections:1;
    unsigned    has_cpu:1;
    unsigned    has_capacity:1;
    unsigned    has_draining:1;
    unsigned    draining:1;
    unsigned    deregister:1;     /* register only: the backend leaves */
} ra_msg_t;


/* short lowercase name of a reason, for logs and metrics labels */
const char *ra_msg_err_name(ra_msg_err_e err);

/*
 * Parses a register or signaling message of len bytes (not NUL-terminated).
 * Fills *msg and returns RA_MSG_OK, or returns the reason and sets
 * *detail to a static human-readable explanation.
 *
 * Both types need a usable url (see ra_msg_url_hostport); a signaling
 * message also needs connections, cpu or draining.  The optional fields
 * are checked in both types; null counts as absent; unknown fields are
 * ignored.  On success *detail is "ok"; detail may be NULL.
 * docs/protocol.md is the full reference.
 */
ra_msg_err_e ra_msg_parse(ra_msg_type_e type, const char *data, size_t len,
    ra_msg_t *msg, const char **detail);

/*
 * Finds "host:port" in a url such as "ws://10.0.0.11:3000/path"; a missing
 * port is the scheme's default (ws, http: 80; wss, https: 443).  Writes
 * NUL-terminated text to buf; returns its length, or -1 when the url is
 * not usable.
 *
 * Usable: at most RA_MSG_URL_MAX bytes of printable ASCII without spaces;
 * scheme ws, wss, http or https (any case) or none at all ("host:port",
 * port required, nothing after it); no userinfo ("user@"); a host name or
 * IPv4 address of letters, digits, '-', '.', '_', or an IPv6 address in
 * brackets; port 1-65535.  The host is written in lowercase, an IPv6
 * address in its canonical form ("[::1]:3000"); path, query and fragment
 * are ignored.
 */
int ra_msg_url_hostport(const char *url, size_t len, char *buf, size_t size);

/*
 * What nginx instances share on the rooms channel: a placement, or the
 * connections an instance holds to a backend.
 *
 *     "1 <instance: 16 hex digits> <n|m> <upstream> <backend>\n<room>"
 *     "1 <instance> c <upstream> <backend>\n<connections>[ <joins>]"
 *
 * n: a new room, m: a moved room, c: a count (decimal, 9 digits at most
 * each).  The upstream and the
 * backend are names without spaces; the room is every byte after the
 * newline.
 */
#define RA_MSG_ROOM_NEW      'n'
#define RA_MSG_ROOM_MOVED    'm'
#define RA_MSG_ROOM_COUNT    'c'

typedef struct {
    uint64_t       instance;
    char           kind;          /* RA_MSG_ROOM_* */
    const char    *upstream;
    size_t         upstream_len;
    const char    *backend;
    size_t         backend_len;
    const char    *room;
    size_t         room_len;
} ra_msg_room_t;


/* the bytes ra_msg_room_encode() writes */
size_t ra_msg_room_size(const ra_msg_room_t *m);

/* writes the message into buf (ra_msg_room_size() bytes); its length */
size_t ra_msg_room_encode(const ra_msg_room_t *m, char *buf);

/*
 * Parses a message of len bytes; the strings of *m point into data.
 * RA_MSG_ERR_JSON (not a placement message) with *detail on error.
 */
ra_msg_err_e ra_msg_room_parse(const char *data, size_t len,
    ra_msg_room_t *m, const char **detail);


#pragma GCC visibility pop

#endif /* RA_MESSAGE_H */
