/*
 * Signed Redis messages: HMAC-SHA256 with a shared key, so that a client
 * that may PUBLISH or HSET on the Redis but has no key cannot steer
 * placement.  Plain C (OpenSSL's libcrypto for SHA-256, no nginx
 * headers).  A signed message is the unsigned one after a prefix line:
 *
 *     "sig1 <unix seconds> <64 lowercase hex digits>\n<message>"
 *
 * The HMAC covers "<kind>\n<unix seconds>\n<message>", kind being
 * "register", "signaling" (also a snapshot hash entry) or "rooms", so a
 * message cannot be replayed as another kind, and an old one is refused
 * once outside the freshness window.  docs/protocol.md is the reference.
 */

#ifndef RA_SIGN_H
#define RA_SIGN_H

#include <stddef.h>
#include <stdint.h>


#pragma GCC visibility push(hidden)


#define RA_SIGN_KEY_MIN      16       /* bytes of a key file, at least */
#define RA_SIGN_KEY_MAX      256      /* and at most */
#define RA_SIGN_MAC_LEN      32       /* bytes of an HMAC-SHA256 */
#define RA_SIGN_TAG          "sig1 "
#define RA_SIGN_TS_MAX_LEN   12       /* digits of a timestamp, at most */

/* the longest prefix: "sig1 " ts " " hex "\n" */
#define RA_SIGN_PREFIX_MAX   (sizeof(RA_SIGN_TAG) - 1 + RA_SIGN_TS_MAX_LEN \
                              + 1 + 2 * RA_SIGN_MAC_LEN + 1)


typedef enum {
    RA_SIGN_OK = 0,
    RA_SIGN_UNSIGNED,         /* no "sig1 " prefix */
    RA_SIGN_MALFORMED,        /* a prefix that cannot be read */
    RA_SIGN_BAD,              /* no key gives this HMAC */
    RA_SIGN_STALE             /* timestamp outside the window */
} ra_sign_err_e;


typedef struct {
    size_t          len;
    unsigned char   data[RA_SIGN_KEY_MAX];
} ra_sign_key_t;


/* the keys of an instance: sign with keys[0], accept any of nkeys */
typedef struct {
    ra_sign_key_t   keys[2];
    size_t          nkeys;
    int64_t         window;   /* seconds either side of now; 0: no check */
} ra_sign_conf_t;


/* a message split into its signature and what it signs */
typedef struct {
    int64_t         ts;
    unsigned char   mac[RA_SIGN_MAC_LEN];
    const char     *payload;
    size_t          payload_len;
} ra_sign_msg_t;


/*
 * HMAC-SHA256 (RFC 2104) of the concatenation of n parts.  0, or -1 when
 * libcrypto fails.
 */
int ra_sign_hmac(const unsigned char *key, size_t klen,
    const void *const *parts, const size_t *lens, size_t n,
    unsigned char out[RA_SIGN_MAC_LEN]);

/*
 * Reads a key file: its bytes, trailing spaces, tabs and newlines
 * dropped; RA_SIGN_KEY_MIN to RA_SIGN_KEY_MAX bytes.  0, or -1 with *err
 * a static explanation (errno is kept for a failed open or read).
 */
int ra_sign_key_read(const char *path, ra_sign_key_t *key, const char **err);

/*
 * Writes the prefix of a message of this kind signed at ts with key into
 * buf (RA_SIGN_PREFIX_MAX bytes); returns its length, 0 on failure.
 */
size_t ra_sign_prefix(const ra_sign_key_t *key, const char *kind, int64_t ts,
    const char *data, size_t len, char *buf);

/*
 * Splits a message: RA_SIGN_OK with *sm filled, RA_SIGN_UNSIGNED (no
 * prefix: the payload is the whole message) or RA_SIGN_MALFORMED.
 */
ra_sign_err_e ra_sign_split(const char *data, size_t len, ra_sign_msg_t *sm);

/*
 * Checks a message of this kind against the keys at time now (unix
 * seconds): RA_SIGN_OK with *payload, *plen the message without the
 * prefix, or why not, with *detail a static explanation.
 */
ra_sign_err_e ra_sign_verify(const ra_sign_conf_t *conf, const char *kind,
    const char *data, size_t len, int64_t now, const char **payload,
    size_t *plen, const char **detail);


#pragma GCC visibility pop

#endif /* RA_SIGN_H */
