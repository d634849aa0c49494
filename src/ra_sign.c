/*
 * Signed Redis messages (see ra_sign.h and docs/protocol.md).  HMAC is
 * built here on libcrypto's EVP SHA-256, which every OpenSSL from 1.1 to
 * 3.x offers without deprecation warnings (HMAC_CTX is deprecated in 3.0,
 * EVP_MAC absent from 1.1).  Comparisons of MACs take constant time.
 */

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "ra_sign.h"


#define RA_SIGN_BLOCK  64         /* SHA-256's block size */


static int ra_sign_digest(const unsigned char *pad, const void *const *parts,
    const size_t *lens, size_t n, unsigned char out[RA_SIGN_MAC_LEN]);
static int ra_sign_mac(const ra_sign_key_t *key, const char *kind, int64_t ts,
    const char *data, size_t len, unsigned char out[RA_SIGN_MAC_LEN]);
static int ra_sign_equal(const unsigned char *a, const unsigned char *b,
    size_t n);
static int ra_sign_hex(int c);


int
ra_sign_hmac(const unsigned char *key, size_t klen,
    const void *const *parts, const size_t *lens, size_t n,
    unsigned char out[RA_SIGN_MAC_LEN])
{
    size_t          i;
    unsigned char   k[RA_SIGN_BLOCK], pad[RA_SIGN_BLOCK];
    unsigned char   inner[RA_SIGN_MAC_LEN];
    const void     *outer_parts[1];
    size_t          outer_lens[1];

    memset(k, 0, sizeof(k));

    if (klen > RA_SIGN_BLOCK) {
        /* a long key is hashed first (RFC 2104) */
        outer_parts[0] = key;
        outer_lens[0] = klen;

        if (ra_sign_digest(NULL, outer_parts, outer_lens, 1, k) != 0) {
            return -1;
        }

    } else {
        memcpy(k, key, klen);
    }

    for (i = 0; i < RA_SIGN_BLOCK; i++) {
        pad[i] = k[i] ^ 0x36;
    }

    if (ra_sign_digest(pad, parts, lens, n, inner) != 0) {
        return -1;
    }

    for (i = 0; i < RA_SIGN_BLOCK; i++) {
        pad[i] = k[i] ^ 0x5c;
    }

    outer_parts[0] = inner;
    outer_lens[0] = sizeof(inner);

    return ra_sign_digest(pad, outer_parts, outer_lens, 1, out);
}


/* SHA-256 of the block pad (if any) followed by the parts */

static int
ra_sign_digest(const unsigned char *pad, const void *const *parts,
    const size_t *lens, size_t n, unsigned char out[RA_SIGN_MAC_LEN])
{
    int            ok;
    size_t         i;
    unsigned int   olen;
    EVP_MD_CTX    *ctx;

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return -1;
    }

    ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);

    if (ok && pad) {
        ok = EVP_DigestUpdate(ctx, pad, RA_SIGN_BLOCK);
    }

    for (i = 0; ok && i < n; i++) {
        ok = EVP_DigestUpdate(ctx, parts[i], lens[i]);
    }

    olen = 0;

    if (ok) {
        ok = EVP_DigestFinal_ex(ctx, out, &olen);
    }

    EVP_MD_CTX_free(ctx);

    return (ok && olen == RA_SIGN_MAC_LEN) ? 0 : -1;
}


int
ra_sign_key_read(const char *path, ra_sign_key_t *key, const char **err)
{
    int            e;
    FILE          *f;
    size_t         n;
    unsigned char  buf[RA_SIGN_KEY_MAX + 2];

    f = fopen(path, "rb");
    if (f == NULL) {
        *err = "cannot open the key file";
        return -1;
    }

    n = fread(buf, 1, sizeof(buf), f);
    e = ferror(f) ? errno : 0;
    (void) fclose(f);

    if (e) {
        errno = e;
        *err = "cannot read the key file";
        return -1;
    }

    /* the newline an editor or "echo" adds is not part of the key */

    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'
                 || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
    {
        n--;
    }

    if (n > RA_SIGN_KEY_MAX) {
        *err = "the key is longer than 256 bytes";
        errno = 0;
        return -1;
    }

    if (n < RA_SIGN_KEY_MIN) {
        *err = "the key is shorter than 16 bytes";
        errno = 0;
        return -1;
    }

    memcpy(key->data, buf, n);
    key->len = n;
    memset(buf, 0, sizeof(buf));

    return 0;
}


size_t
ra_sign_prefix(const ra_sign_key_t *key, const char *kind, int64_t ts,
    const char *data, size_t len, char *buf)
{
    int                 n;
    size_t              i;
    unsigned char       mac[RA_SIGN_MAC_LEN];
    static const char   hex[] = "0123456789abcdef";

    if (ts < 0 || ra_sign_mac(key, kind, ts, data, len, mac) != 0) {
        return 0;
    }

    n = snprintf(buf, RA_SIGN_PREFIX_MAX, RA_SIGN_TAG "%lld ", (long long) ts);
    if (n < 0 || (size_t) n + 2 * RA_SIGN_MAC_LEN + 1 > RA_SIGN_PREFIX_MAX) {
        return 0;
    }

    for (i = 0; i < RA_SIGN_MAC_LEN; i++) {
        buf[n++] = hex[mac[i] >> 4];
        buf[n++] = hex[mac[i] & 0xf];
    }

    buf[n++] = '\n';

    return (size_t) n;
}


/* the HMAC of "<kind>\n<ts>\n<data>" */

static int
ra_sign_mac(const ra_sign_key_t *key, const char *kind, int64_t ts,
    const char *data, size_t len, unsigned char out[RA_SIGN_MAC_LEN])
{
    int          n;
    char         head[64];
    size_t       lens[2];
    const void  *parts[2];

    n = snprintf(head, sizeof(head), "%s\n%lld\n", kind, (long long) ts);
    if (n < 0 || (size_t) n >= sizeof(head)) {
        return -1;
    }

    parts[0] = head;
    lens[0] = (size_t) n;
    parts[1] = data;
    lens[1] = len;

    return ra_sign_hmac(key->data, key->len, parts, lens, 2, out);
}


ra_sign_err_e
ra_sign_split(const char *data, size_t len, ra_sign_msg_t *sm)
{
    int          hi, lo;
    size_t       i, digits;
    const char  *p, *last;

    sm->payload = data;
    sm->payload_len = len;

    if (len < sizeof(RA_SIGN_TAG) - 1
        || memcmp(data, RA_SIGN_TAG, sizeof(RA_SIGN_TAG) - 1) != 0)
    {
        return RA_SIGN_UNSIGNED;
    }

    p = data + sizeof(RA_SIGN_TAG) - 1;
    last = data + len;

    /* the timestamp: decimal, no sign, no leading zero but "0" itself */

    sm->ts = 0;

    for (digits = 0; p < last && *p >= '0' && *p <= '9'; p++, digits++) {
        if (digits == RA_SIGN_TS_MAX_LEN || (digits == 1 && sm->ts == 0)) {
            return RA_SIGN_MALFORMED;
        }

        sm->ts = sm->ts * 10 + (*p - '0');
    }

    if (digits == 0 || p == last || *p++ != ' ') {
        return RA_SIGN_MALFORMED;
    }

    if ((size_t) (last - p) < 2 * RA_SIGN_MAC_LEN + 1) {
        return RA_SIGN_MALFORMED;
    }

    for (i = 0; i < RA_SIGN_MAC_LEN; i++) {
        hi = ra_sign_hex((unsigned char) p[2 * i]);
        lo = ra_sign_hex((unsigned char) p[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return RA_SIGN_MALFORMED;
        }

        sm->mac[i] = (unsigned char) (hi << 4 | lo);
    }

    p += 2 * RA_SIGN_MAC_LEN;

    if (*p++ != '\n') {
        return RA_SIGN_MALFORMED;
    }

    sm->payload = p;
    sm->payload_len = (size_t) (last - p);

    return RA_SIGN_OK;
}


ra_sign_err_e
ra_sign_verify(const ra_sign_conf_t *conf, const char *kind,
    const char *data, size_t len, int64_t now, const char **payload,
    size_t *plen, const char **detail)
{
    size_t          i;
    ra_sign_err_e   rc;
    ra_sign_msg_t   sm;
    unsigned char   mac[RA_SIGN_MAC_LEN];

    rc = ra_sign_split(data, len, &sm);

    *payload = sm.payload;
    *plen = sm.payload_len;

    if (rc == RA_SIGN_UNSIGNED) {
        *detail = "unsigned message";
        return rc;
    }

    if (rc != RA_SIGN_OK) {
        *detail = "malformed signature line";
        return rc;
    }

    for (i = 0; i < conf->nkeys; i++) {
        if (ra_sign_mac(&conf->keys[i], kind, sm.ts, sm.payload,
                        sm.payload_len, mac) == 0
            && ra_sign_equal(mac, sm.mac, RA_SIGN_MAC_LEN))
        {
            break;
        }
    }

    if (i == conf->nkeys) {
        *detail = "signature does not match any key";
        return RA_SIGN_BAD;
    }

    /* checked once authentic: the timestamp of a forgery means nothing */

    if (conf->window
        && (sm.ts < now - conf->window || sm.ts > now + conf->window))
    {
        *detail = "signed outside the freshness window";
        return RA_SIGN_STALE;
    }

    *detail = "ok";

    return RA_SIGN_OK;
}


static int
ra_sign_equal(const unsigned char *a, const unsigned char *b, size_t n)
{
    size_t         i;
    unsigned char  d;

    d = 0;

    for (i = 0; i < n; i++) {
        d |= a[i] ^ b[i];
    }

    return d == 0;
}


static int
ra_sign_hex(int c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}
