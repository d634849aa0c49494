/*
 * Unit tests of src/ra_sign.c: HMAC-SHA256 against the RFC 4231 vectors,
 * then the signature line: signing and checking are each other's
 * inverse, any changed byte, another kind, an unknown key or an old
 * timestamp is refused, either of two keys is accepted.
 */

#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "ra_sign.h"
#include "ra_test.h"


typedef struct {
    const char     *key_hex;
    const char     *data_hex;
    const char     *mac_hex;
} vector_t;


/* RFC 4231, test cases 1-4, 6 and 7 (5 is a truncated MAC) */
static const vector_t  vectors[] = {
    { "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b",
      "4869205468657265",
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "4a656665",
      "7768617420646f2079612077616e7420666f72206e6f7468696e673f",
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "dddddddddddddddddddddddddddddddddddddddddddddddddd"
      "dddddddddddddddddddddddddddddddddddddddddddddddddd",
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { "0102030405060708090a0b0c0d0e0f10111213141516171819",
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd"
      "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd",
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaa",
      "54657374205573696e67204c6172676572205468616e20426c6f636b2d53697a"
      "65204b6579202d2048617368204b6579204669727374",
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
      "aaaaaa",
      "5468697320697320612074657374207573696e672061206c6172676572207468"
      "616e20626c6f636b2d73697a65206b657920616e642061206c61726765722074"
      "68616e20626c6f636b2d73697a6520646174612e20546865206b6579206e6565"
      "647320746f20626520686173686564206265666f7265206265696e6720757365"
      "642062792074686520484d414320616c676f726974686d2e",
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
};


static size_t
unhex(const char *s, unsigned char *out)
{
    size_t        n;
    unsigned int  b;

    for (n = 0; s[2 * n]; n++) {
        sscanf(s + 2 * n, "%2x", &b);
        out[n] = (unsigned char) b;
    }

    return n;
}


static void
tohex(const unsigned char *in, size_t n, char *out)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        sprintf(out + 2 * i, "%02x", in[i]);
    }
}


static void
test_vectors(void)
{
    char            hex[2 * RA_SIGN_MAC_LEN + 1], name[64];
    size_t          i, klen, lens[3];
    unsigned char   key[256], data[256], mac[RA_SIGN_MAC_LEN];
    const void     *parts[3];

    for (i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        klen = unhex(vectors[i].key_hex, key);
        lens[0] = unhex(vectors[i].data_hex, data);
        parts[0] = data;

        snprintf(name, sizeof(name), "RFC 4231 vector %zu", i);
        RA_OK(ra_sign_hmac(key, klen, parts, lens, 1, mac) == 0
              && (tohex(mac, sizeof(mac), hex),
                  strcmp(hex, vectors[i].mac_hex) == 0), name);

        /* the same data in three parts gives the same MAC */
        parts[0] = data;
        lens[0] = 1;
        parts[1] = data + 1;
        lens[1] = 0;
        parts[2] = data + 1;
        lens[2] = unhex(vectors[i].data_hex, data) - 1;

        snprintf(name, sizeof(name), "RFC 4231 vector %zu in parts", i);
        RA_OK(ra_sign_hmac(key, klen, parts, lens, 3, mac) == 0
              && (tohex(mac, sizeof(mac), hex),
                  strcmp(hex, vectors[i].mac_hex) == 0), name);
    }
}


static ra_sign_err_e
verify(const ra_sign_conf_t *conf, const char *kind, const char *msg,
    size_t len, int64_t now, const char **payload, size_t *plen)
{
    const char  *detail;

    return ra_sign_verify(conf, kind, msg, len, now, payload, plen, &detail);
}


static void
test_line(void)
{
    char             buf[RA_SIGN_PREFIX_MAX + 256], bad[sizeof(buf)];
    size_t           n, len, plen, i, refused;
    const char      *payload;
    const char      *body;
    ra_sign_conf_t   conf, other;

    body = "{\"url\":\"ws://10.0.0.11:3000\",\"connections\":5}";

    memset(&conf, 0, sizeof(conf));
    memcpy(conf.keys[0].data, "0123456789abcdef0123456789abcdef", 32);
    conf.keys[0].len = 32;
    conf.nkeys = 1;
    conf.window = 300;

    n = ra_sign_prefix(&conf.keys[0], "signaling", 1700000000, body,
                       strlen(body), buf);
    RA_IS_INT(n, 5 + 10 + 1 + 64 + 1, "prefix length");
    RA_OK(strncmp(buf, "sig1 1700000000 ", 16) == 0 && buf[n - 1] == '\n',
          "prefix form");

    memcpy(buf + n, body, strlen(body));
    len = n + strlen(body);

    RA_IS_INT(verify(&conf, "signaling", buf, len, 1700000000, &payload,
                     &plen), RA_SIGN_OK, "signed message verifies");
    RA_OK(plen == strlen(body) && memcmp(payload, body, plen) == 0,
          "payload is the message after the line");

    RA_IS_INT(verify(&conf, "register", buf, len, 1700000000, &payload,
                     &plen), RA_SIGN_BAD, "another kind is refused");
    RA_IS_INT(verify(&conf, "signaling", buf, len, 1700000301, &payload,
                     &plen), RA_SIGN_STALE, "301 s later is stale");
    RA_IS_INT(verify(&conf, "signaling", buf, len, 1699999699, &payload,
                     &plen), RA_SIGN_STALE, "301 s earlier is stale");
    RA_IS_INT(verify(&conf, "signaling", buf, len, 1700000300, &payload,
                     &plen), RA_SIGN_OK, "300 s later is fresh");

    conf.window = 0;
    RA_IS_INT(verify(&conf, "signaling", buf, len, 1800000000, &payload,
                     &plen), RA_SIGN_OK, "no window: any time");
    conf.window = 300;

    RA_IS_INT(verify(&conf, "signaling", body, strlen(body), 1700000000,
                     &payload, &plen), RA_SIGN_UNSIGNED, "unsigned");
    RA_OK(payload == body && plen == strlen(body),
          "unsigned: the payload is the message");

    /* every single changed byte is refused */

    refused = 0;

    for (i = 0; i < len; i++) {
        memcpy(bad, buf, len);
        bad[i] ^= (i < 5 || buf[i] == ' ' || buf[i] == '\n') ? 0x01 : 0x04;

        if (verify(&conf, "signaling", bad, len, 1700000000, &payload,
                   &plen) != RA_SIGN_OK)
        {
            refused++;
        }
    }

    RA_IS_INT(refused, len, "any changed byte is refused");

    RA_IS_INT(verify(&conf, "signaling", buf, len - 1, 1700000000, &payload,
                     &plen), RA_SIGN_BAD, "a truncated message is refused");

    /* rotation: signed with either key, accepted while both are listed */

    memset(&other, 0, sizeof(other));
    memcpy(other.keys[0].data, "another key of at least 16 bytes", 32);
    other.keys[0].len = 32;
    other.nkeys = 1;
    other.window = 300;

    RA_IS_INT(verify(&other, "signaling", buf, len, 1700000000, &payload,
                     &plen), RA_SIGN_BAD, "another key is refused");

    other.keys[1] = conf.keys[0];
    other.nkeys = 2;

    RA_IS_INT(verify(&other, "signaling", buf, len, 1700000000, &payload,
                     &plen), RA_SIGN_OK, "the second key is accepted");

    /* malformed lines */

    RA_IS_INT(verify(&conf, "signaling", "sig1 x", 6, 0, &payload, &plen),
              RA_SIGN_MALFORMED, "no timestamp");
    RA_IS_INT(verify(&conf, "signaling", "sig1 01 ab\n{}", 13, 0, &payload,
                     &plen), RA_SIGN_MALFORMED, "leading zero, short mac");
    RA_IS_INT(verify(&conf, "signaling", "sig1 1234567890123 ", 19, 0,
                     &payload, &plen),
              RA_SIGN_MALFORMED, "timestamp too long");

    memcpy(bad, buf, len);
    bad[n - 1] = ' ';
    RA_IS_INT(verify(&conf, "signaling", bad, len, 1700000000, &payload,
                     &plen), RA_SIGN_MALFORMED, "no newline after the mac");

    memcpy(bad, buf, len);
    bad[20] = 'g';
    RA_IS_INT(verify(&conf, "signaling", bad, len, 1700000000, &payload,
                     &plen), RA_SIGN_MALFORMED, "not hex");

    /* uppercase hex is the same MAC */

    memcpy(bad, buf, len);
    for (i = 16; i < n - 1; i++) {
        if (bad[i] >= 'a' && bad[i] <= 'f') {
            bad[i] -= 'a' - 'A';
        }
    }
    RA_IS_INT(verify(&conf, "signaling", bad, len, 1700000000, &payload,
                     &plen), RA_SIGN_OK, "uppercase hex");

    /* an empty payload can be signed too */

    n = ra_sign_prefix(&conf.keys[0], "rooms", 5, "", 0, buf);
    RA_IS_INT(verify(&conf, "rooms", buf, n, 5, &payload, &plen),
              RA_SIGN_OK, "empty payload");
    RA_IS_INT(plen, 0, "empty payload length");
}


static void
test_key_read(void)
{
    char            path[] = "/tmp/ra_sign_keyXXXXXX";
    int             fd;
    const char     *err;
    ra_sign_key_t   key;

    fd = mkstemp(path);
    RA_OK(fd >= 0, "temporary key file");
    if (fd < 0) {
        return;
    }

    RA_OK(write(fd, "0123456789abcdef0123\n\n", 22) == 22, "key written");
    RA_IS_INT(ra_sign_key_read(path, &key, &err), 0, "key read");
    RA_OK(key.len == 20 && memcmp(key.data, "0123456789abcdef0123", 20) == 0,
          "trailing newlines dropped");

    RA_OK(ftruncate(fd, 0) == 0 && lseek(fd, 0, SEEK_SET) == 0
          && write(fd, "short key\n", 10) == 10, "short key written");
    RA_IS_INT(ra_sign_key_read(path, &key, &err), -1, "short key refused");

    close(fd);
    unlink(path);

    RA_IS_INT(ra_sign_key_read(path, &key, &err), -1, "missing file refused");
}


int
main(void)
{
    test_vectors();
    test_line();
    test_key_read();

    return RA_DONE();
}
