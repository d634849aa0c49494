/*
 * ra-agent: reports a backend's load to ngx_http_room_affinity_module
 * through Redis, for backends that cannot publish it themselves.
 *
 * It PUBLISHes <prefix>register {"url"} after every connect to Redis, then
 * every interval PUBLISHes <prefix>signaling {"url","connections","cpu",
 * "capacity","draining"} and stores the same JSON in the hash
 * <prefix>room_affinity:backends under the url.  On SIGTERM or SIGINT it
 * reports draining:true and exits.
 *
 * Threads: the main thread owns the Redis connection (synchronous hiredis)
 * and counts connections; a sampling thread reads /proc/stat and only ever
 * touches a mutex-protected number, so Redis never blocks it.
 */

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/select.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ra_sign.h"


#define RA_AGENT_VERSION     "0.1.0"

#define RA_URL_MAX           256       /* as the module's parser accepts */
#define RA_MSG_MAX           2048      /* a 256-byte url escapes to 1.5k */
#define RA_HOST_MAX          256
#define RA_COUNT_MAX         1000000000  /* largest count nginx accepts */
#define RA_SNAPSHOT_KEY      "room_affinity:backends"

#define RA_REDIS_TIMEOUT     1000      /* ms, connect and each command */
#define RA_BACKOFF_MIN       100       /* ms */
#define RA_BACKOFF_MAX       10000     /* ms */
#define RA_FIRST_CPU_WINDOW  250       /* ms, first sample comes early */

#define RA_LOG_ERR           0
#define RA_LOG_WARN          1
#define RA_LOG_INFO          2
#define RA_LOG_DEBUG         3


typedef struct {
    char             host[RA_HOST_MAX];
    int              port;
    const char      *unix_path;
    const char      *password;
    long             db;
    const char      *prefix;
    const char      *url;
    long             count_port;       /* -1: not counting a port */
    const char      *count_cmd;
    const char      *count_file;
    long             capacity;         /* -1: not reported */
    long             interval;         /* ms */
    long             cpu_interval;     /* ms */
    ra_sign_key_t    key;              /* len 0: messages not signed */
    int              verbose;
    unsigned         once:1;
} ra_conf_t;


typedef struct {
    pthread_mutex_t  mutex;
    pthread_cond_t   cond;
    long             interval;         /* ms */
    double           cpu;              /* percent of the last window */
    unsigned long    samples;          /* 0: no value yet */
    unsigned         stop:1;
} ra_sampler_t;


typedef struct {
    redisContext    *ctx;              /* NULL while disconnected */
    unsigned         failures;
    int64_t          next_try;         /* monotonic ms */
} ra_redis_t;


typedef struct {
    unsigned long long  busy;
    unsigned long long  total;
} ra_cpu_times_t;


static void ra_usage(FILE *out);
static int ra_parse_args(ra_conf_t *conf, int argc, char **argv);
static int ra_parse_redis(ra_conf_t *conf, const char *arg);
static long ra_parse_time(const char *arg);
static long ra_parse_number(const char *arg, long min, long max);
static int ra_sign(ra_conf_t *conf, const char *kind, char *msg,
    size_t size);
static int ra_url_valid(const char *url);
static long ra_url_port(const char *url);
static void ra_on_signal(int signo);
static void ra_on_sigpipe(int signo);
static void *ra_sampler_run(void *data);
static int ra_cpu_read(ra_cpu_times_t *t);
static double ra_sampler_get(ra_sampler_t *s, long wait);
static long ra_count(ra_conf_t *conf, const sigset_t *unblocked);
static long ra_count_port(long port);
static long ra_count_file(const char *path);
static long ra_count_cmd(const char *cmd, const sigset_t *unblocked);
static int ra_redis_connect(ra_conf_t *conf, ra_redis_t *r);
static int ra_redis_call(ra_redis_t *r, const char *what, const char *fmt,
    ...);
static void ra_redis_fail(ra_redis_t *r);
static long ra_redis_backoff(ra_redis_t *r);
static int ra_publish_register(ra_conf_t *conf, ra_redis_t *r);
static int ra_report(ra_conf_t *conf, ra_redis_t *r, ra_sampler_t *s,
    const sigset_t *unblocked, int draining);
static size_t ra_json_string(char *buf, size_t size, const char *str);
static int64_t ra_now(void);
static void ra_log(int level, const char *fmt, ...);


static volatile sig_atomic_t  ra_quit;
static int                    ra_verbose;


int
main(int argc, char **argv)
{
    int                 rc, err;
    int64_t             now, next_report, wait;
    sigset_t            quit_set, unblocked;
    pthread_t           thread;
    ra_conf_t           conf;
    ra_redis_t          r;
    ra_sampler_t        s;
    struct timespec     ts;
    struct sigaction    sa;
    pthread_condattr_t  attr;

    rc = ra_parse_args(&conf, argc, argv);
    if (rc != -1) {
        return rc;
    }

    ra_verbose = conf.verbose;

    memset(&sa, 0, sizeof(sa));
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);

    sa.sa_handler = ra_on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    /*
     * hiredis writes to a socket that Redis may have closed: write() must
     * fail with EPIPE instead of killing us.  A handler rather than SIG_IGN,
     * as a handler is not inherited by a --count-cmd command.
     */
    sa.sa_handler = ra_on_sigpipe;
    sigaction(SIGPIPE, &sa, NULL);

    /*
     * SIGTERM and SIGINT stay blocked except inside pselect(), so a signal
     * can never be lost between the check of ra_quit and the sleep; the
     * sampling thread inherits the blocked mask and never sees them.
     */
    sigemptyset(&quit_set);
    sigaddset(&quit_set, SIGTERM);
    sigaddset(&quit_set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &quit_set, &unblocked);
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);

    memset(&s, 0, sizeof(s));
    s.interval = conf.cpu_interval;
    pthread_mutex_init(&s.mutex, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s.cond, &attr);
    pthread_condattr_destroy(&attr);

    err = pthread_create(&thread, NULL, ra_sampler_run, &s);
    if (err != 0) {
        ra_log(RA_LOG_ERR, "pthread_create() failed: %s", strerror(err));
        return 1;
    }

    srandom((unsigned) (ra_now() ^ getpid()));

    memset(&r, 0, sizeof(r));
    r.next_try = ra_now();

    if (conf.unix_path != NULL) {
        ra_log(RA_LOG_INFO, "reporting \"%s\" to unix:%s every %ld ms",
               conf.url, conf.unix_path, conf.interval);

    } else {
        ra_log(RA_LOG_INFO, "reporting \"%s\" to %s:%d every %ld ms",
               conf.url, conf.host, conf.port, conf.interval);
    }

    /* the first report carries a cpu value when one comes quickly */
    (void) ra_sampler_get(&s, 2 * RA_FIRST_CPU_WINDOW);

    rc = 0;
    next_report = ra_now();

    while (!ra_quit) {
        now = ra_now();

        if (r.ctx == NULL && now >= r.next_try) {
            if (ra_redis_connect(&conf, &r) == 0) {
                (void) ra_publish_register(&conf, &r);
            }
        }

        if (now >= next_report) {
            if (conf.once) {
                rc = (r.ctx != NULL
                      && ra_report(&conf, &r, &s, &unblocked, 0) == 0)
                     ? 0 : 1;
                break;
            }

            (void) ra_report(&conf, &r, &s, &unblocked, 0);

            next_report += conf.interval;
            if (next_report <= now) {
                next_report = now + conf.interval;
            }
        }

        now = ra_now();
        wait = next_report - now;

        if (r.ctx == NULL && r.next_try - now < wait) {
            wait = r.next_try - now;
        }

        if (wait < 0) {
            wait = 0;
        }

        ts.tv_sec = wait / 1000;
        ts.tv_nsec = (wait % 1000) * 1000000;

        /* returns early with EINTR when SIGTERM or SIGINT arrives */
        (void) pselect(0, NULL, NULL, NULL, &ts, &unblocked);
    }

    if (ra_quit) {
        ra_log(RA_LOG_INFO, "signal %d received, reporting draining",
               (int) ra_quit);

        if (r.ctx == NULL) {
            (void) ra_redis_connect(&conf, &r);
        }

        rc = (r.ctx != NULL && ra_report(&conf, &r, &s, &unblocked, 1) == 0)
             ? 0 : 1;

        if (rc != 0) {
            ra_log(RA_LOG_ERR, "could not report draining");
        }
    }

    pthread_mutex_lock(&s.mutex);
    s.stop = 1;
    pthread_cond_broadcast(&s.cond);
    pthread_mutex_unlock(&s.mutex);
    pthread_join(thread, NULL);

    pthread_cond_destroy(&s.cond);
    pthread_mutex_destroy(&s.mutex);

    if (r.ctx != NULL) {
        redisFree(r.ctx);
    }

    return rc;
}


static void
ra_usage(FILE *out)
{
    fprintf(out,
"usage: ra-agent --url URL [options]\n"
"\n"
"Reports this backend's load to ngx_http_room_affinity_module through\n"
"Redis: PUBLISH <prefix>register once connected, PUBLISH <prefix>signaling\n"
"every interval, and HSET <prefix>" RA_SNAPSHOT_KEY " <url> <json>.\n"
"SIGTERM or SIGINT reports draining:true, then exits.\n"
"\n"
"  --url URL           this backend's url, e.g. ws://10.0.0.11:3001; its\n"
"                      host:port must be the nginx upstream server address\n"
"                      (required, at most %d bytes)\n"
"  --redis ADDR        host:port, [ipv6]:port, unix:PATH, or a socket path\n"
"                      (anything with a '/') (default: 127.0.0.1:6379)\n"
"  --password PASS     Redis AUTH password (default: $RA_AGENT_PASSWORD)\n"
"  --db N              Redis database for the snapshot hash (default: 0)\n"
"  --prefix TEXT       channel and key prefix (default: none)\n"
"  --key FILE          sign every message with the shared key in FILE, as\n"
"                      nginx's room_affinity_redis key= expects\n"
"\n"
"connections are counted by one of:\n"
"  --port N            ESTABLISHED TCP connections whose local port is N,\n"
"                      from /proc/net/tcp and /proc/net/tcp6\n"
"                      (default: the port of --url)\n"
"  --count-cmd CMD     the first number printed by \"/bin/sh -c CMD\",\n"
"                      which must exit 0\n"
"  --count-file PATH   the first number in the file PATH\n"
"\n"
"  --capacity N        capacity reported to nginx (default: not reported)\n"
"  --interval T        time between reports (default: 2s)\n"
"  --cpu-interval T    CPU sampling window, in its own thread (default: 5s)\n"
"  --once              connect, report once, exit 0 if Redis took it\n"
"  -v, --verbose       log every report\n"
"  -h, --help          print this help\n"
"  -V, --version       print the version\n"
"\n"
"T is a number with an optional unit: ms, s (default), m.  A count that\n"
"cannot be read skips that report, so nginx sees the backend's data age.\n"
"Exit status: 0 ok, 1 Redis did not take the report, 2 bad arguments.\n",
        RA_URL_MAX);
}


static int
ra_parse_args(ra_conf_t *conf, int argc, char **argv)
{
    int           c, sources;
    const char   *redis, *err;

    static const struct option  options[] = {
        { "url",           required_argument, NULL, 'u' },
        { "redis",         required_argument, NULL, 'r' },
        { "password",      required_argument, NULL, 'a' },
        { "db",            required_argument, NULL, 'n' },
        { "prefix",        required_argument, NULL, 'P' },
        { "port",          required_argument, NULL, 'p' },
        { "count-cmd",     required_argument, NULL, 'c' },
        { "count-file",    required_argument, NULL, 'f' },
        { "capacity",      required_argument, NULL, 'C' },
        { "interval",      required_argument, NULL, 'i' },
        { "cpu-interval",  required_argument, NULL, 'I' },
        { "key",           required_argument, NULL, 'k' },
        { "once",          no_argument,       NULL, 'o' },
        { "verbose",       no_argument,       NULL, 'v' },
        { "help",          no_argument,       NULL, 'h' },
        { "version",       no_argument,       NULL, 'V' },
        { NULL,            0,                 NULL, 0 }
    };

    memset(conf, 0, sizeof(ra_conf_t));
    conf->password = getenv("RA_AGENT_PASSWORD");
    conf->prefix = "";
    conf->count_port = -1;
    conf->capacity = -1;
    conf->interval = 2000;
    conf->cpu_interval = 5000;

    redis = "127.0.0.1:6379";

    while ((c = getopt_long(argc, argv, "vhV", options, NULL)) != -1) {

        switch (c) {

        case 'u':
            conf->url = optarg;
            break;

        case 'r':
            redis = optarg;
            break;

        case 'a':
            conf->password = optarg;
            break;

        case 'n':
            conf->db = ra_parse_number(optarg, 0, INT_MAX);
            if (conf->db < 0) {
                fprintf(stderr, "ra-agent: invalid --db \"%s\"\n", optarg);
                return 2;
            }
            break;

        case 'P':
            conf->prefix = optarg;
            break;

        case 'p':
            conf->count_port = ra_parse_number(optarg, 1, 65535);
            if (conf->count_port < 0) {
                fprintf(stderr, "ra-agent: invalid --port \"%s\"\n", optarg);
                return 2;
            }
            break;

        case 'c':
            conf->count_cmd = optarg;
            break;

        case 'f':
            conf->count_file = optarg;
            break;

        case 'C':
            conf->capacity = ra_parse_number(optarg, 1, 1000000000);
            if (conf->capacity < 0) {
                fprintf(stderr, "ra-agent: invalid --capacity \"%s\"\n",
                        optarg);
                return 2;
            }
            break;

        case 'i':
            conf->interval = ra_parse_time(optarg);
            if (conf->interval < 0) {
                fprintf(stderr, "ra-agent: invalid --interval \"%s\"\n",
                        optarg);
                return 2;
            }
            break;

        case 'I':
            conf->cpu_interval = ra_parse_time(optarg);
            if (conf->cpu_interval < 0) {
                fprintf(stderr, "ra-agent: invalid --cpu-interval \"%s\"\n",
                        optarg);
                return 2;
            }
            break;

        case 'k':
            if (ra_sign_key_read(optarg, &conf->key, &err) != 0) {
                fprintf(stderr, "ra-agent: --key: %s \"%s\"\n", err,
                        optarg);
                return 2;
            }
            break;

        case 'o':
            conf->once = 1;
            break;

        case 'v':
            conf->verbose++;
            break;

        case 'h':
            ra_usage(stdout);
            return 0;

        case 'V':
            printf("ra-agent " RA_AGENT_VERSION "\n");
            return 0;

        default:
            ra_usage(stderr);
            return 2;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "ra-agent: unexpected argument \"%s\"\n",
                argv[optind]);
        return 2;
    }

    if (conf->url == NULL) {
        fprintf(stderr, "ra-agent: --url is required (see --help)\n");
        return 2;
    }

    if (ra_url_valid(conf->url) != 0) {
        fprintf(stderr, "ra-agent: --url must be 1 to %d bytes of printable "
                "ASCII without spaces\n", RA_URL_MAX);
        return 2;
    }

    sources = (conf->count_port != -1) + (conf->count_cmd != NULL)
              + (conf->count_file != NULL);

    if (sources > 1) {
        fprintf(stderr, "ra-agent: use only one of --port, --count-cmd, "
                "--count-file\n");
        return 2;
    }

    if (sources == 0) {
        conf->count_port = ra_url_port(conf->url);
        if (conf->count_port < 0) {
            fprintf(stderr, "ra-agent: no port in --url \"%s\", use --port, "
                    "--count-cmd or --count-file\n", conf->url);
            return 2;
        }
    }

    if (ra_parse_redis(conf, redis) != 0) {
        fprintf(stderr, "ra-agent: invalid --redis \"%s\"\n", redis);
        return 2;
    }

    return -1;
}


static int
ra_parse_redis(ra_conf_t *conf, const char *arg)
{
    size_t       len;
    const char  *host, *colon, *end;

    if (strncmp(arg, "unix:", 5) == 0) {
        /* as in nginx's room_affinity_redis */
        conf->unix_path = arg + 5;
        return conf->unix_path[0] == '\0' ? -1 : 0;
    }

    if (strchr(arg, '/') != NULL) {
        conf->unix_path = arg;
        return 0;
    }

    if (arg[0] == '[') {
        /* [::1]:6379 */
        host = arg + 1;
        end = strchr(host, ']');
        if (end == NULL) {
            return -1;
        }
        colon = (end[1] == ':') ? end + 1 : NULL;
        if (colon == NULL && end[1] != '\0') {
            return -1;
        }

    } else {
        host = arg;
        colon = strrchr(arg, ':');
        end = colon ? colon : arg + strlen(arg);
    }

    len = end - host;
    if (len == 0 || len >= RA_HOST_MAX) {
        return -1;
    }

    memcpy(conf->host, host, len);
    conf->host[len] = '\0';

    conf->port = colon ? (int) ra_parse_number(colon + 1, 1, 65535) : 6379;

    return conf->port < 0 ? -1 : 0;
}


/* "500ms", "2s", "2", "1m"; -1 when invalid */
static long
ra_parse_time(const char *arg)
{
    long   n, unit;
    char  *end;

    if (arg[0] < '0' || arg[0] > '9') {
        return -1;
    }

    errno = 0;
    n = strtol(arg, &end, 10);
    if (errno != 0 || n <= 0 || n > 86400000) {
        return -1;
    }

    if (*end == '\0' || strcmp(end, "s") == 0) {
        unit = 1000;

    } else if (strcmp(end, "ms") == 0) {
        unit = 1;

    } else if (strcmp(end, "m") == 0) {
        unit = 60000;

    } else {
        return -1;
    }

    return (n > 86400000 / unit) ? -1 : n * unit;
}


/* a whole decimal number in [min, max]; -1 when invalid */
static long
ra_parse_number(const char *arg, long min, long max)
{
    long   n;
    char  *end;

    if (arg[0] < '0' || arg[0] > '9') {
        return -1;
    }

    errno = 0;
    n = strtol(arg, &end, 10);

    if (errno != 0 || *end != '\0' || n < min || n > max) {
        return -1;
    }

    return n;
}


/* what nginx accepts in a url: 1 to 256 bytes of printable ASCII */
static int
ra_url_valid(const char *url)
{
    size_t  len;

    for (len = 0; url[len] != '\0'; len++) {
        if (url[len] <= 0x20 || url[len] >= 0x7f) {
            return -1;
        }
    }

    return (len == 0 || len > RA_URL_MAX) ? -1 : 0;
}


/*
 * The port of "ws://host:port/path" or of a bare "host:port"; the scheme's
 * default when the url has a scheme and no port.
 */
static long
ra_url_port(const char *url)
{
    size_t       scheme;
    const char  *p, *end, *colon;

    p = strstr(url, "://");

    if (p == NULL) {
        scheme = 0;
        p = url;

    } else {
        scheme = p - url;
        p += 3;
    }

    end = p + strcspn(p, "/?#");

    if (*p == '[') {
        p = memchr(p, ']', end - p);
        if (p == NULL) {
            return -1;
        }
    }

    colon = memchr(p, ':', end - p);

    if (colon != NULL) {
        char  buf[8];

        if (end - colon - 1 <= 0 || end - colon - 1 >= (long) sizeof(buf)) {
            return -1;
        }

        memcpy(buf, colon + 1, end - colon - 1);
        buf[end - colon - 1] = '\0';

        return ra_parse_number(buf, 1, 65535);
    }

    if (scheme == 0) {
        return -1;
    }

    if ((scheme == 2 && strncasecmp(url, "ws", 2) == 0)
        || (scheme == 4 && strncasecmp(url, "http", 4) == 0))
    {
        return 80;
    }

    if ((scheme == 3 && strncasecmp(url, "wss", 3) == 0)
        || (scheme == 5 && strncasecmp(url, "https", 5) == 0))
    {
        return 443;
    }

    return -1;
}


static void
ra_on_signal(int signo)
{
    ra_quit = signo;
}


static void
ra_on_sigpipe(int signo)
{
    (void) signo;
}


static void *
ra_sampler_run(void *data)
{
    ra_sampler_t  *s = data;

    int              have_prev, rc;
    long             window;
    double           cpu;
    ra_cpu_times_t   prev, cur;
    struct timespec  deadline;

    have_prev = (ra_cpu_read(&prev) == 0);
    window = s->interval < RA_FIRST_CPU_WINDOW
             ? s->interval : RA_FIRST_CPU_WINDOW;

    pthread_mutex_lock(&s->mutex);

    for ( ;; ) {
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += window / 1000;
        deadline.tv_nsec += (window % 1000) * 1000000;
        if (deadline.tv_nsec >= 1000000000) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000;
        }

        rc = 0;
        while (!s->stop && rc != ETIMEDOUT) {
            rc = pthread_cond_timedwait(&s->cond, &s->mutex, &deadline);
        }

        if (s->stop) {
            break;
        }

        /* no lock held while reading /proc */
        pthread_mutex_unlock(&s->mutex);

        cpu = -1;
        if (ra_cpu_read(&cur) == 0) {
            if (have_prev && cur.total > prev.total) {
                cpu = 100.0 * (double) (cur.busy - prev.busy)
                      / (double) (cur.total - prev.total);
            }
            prev = cur;
            have_prev = 1;
        }

        pthread_mutex_lock(&s->mutex);

        if (cpu >= 0) {
            s->cpu = cpu > 100 ? 100 : cpu;
            s->samples++;
            pthread_cond_broadcast(&s->cond);
        }

        window = s->interval;
    }

    pthread_mutex_unlock(&s->mutex);

    return NULL;
}


/* the aggregate "cpu" line of /proc/stat */
static int
ra_cpu_read(ra_cpu_times_t *t)
{
    int                 n;
    FILE               *fp;
    unsigned long long  v[8];

    fp = fopen("/proc/stat", "r");
    if (fp == NULL) {
        return -1;
    }

    memset(v, 0, sizeof(v));

    /* user nice system idle iowait irq softirq steal (guest is in user) */
    n = fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(fp);

    if (n < 4) {
        return -1;
    }

    t->total = v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
    t->busy = t->total - v[3] - v[4];

    return 0;
}


/* the last CPU percentage, waiting up to wait ms for a first one; or -1 */
static double
ra_sampler_get(ra_sampler_t *s, long wait)
{
    double           cpu;
    struct timespec  deadline;

    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += wait / 1000;
    deadline.tv_nsec += (wait % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&s->mutex);

    while (s->samples == 0 && wait > 0
           && pthread_cond_timedwait(&s->cond, &s->mutex, &deadline)
              != ETIMEDOUT)
    {
        /* void */
    }

    cpu = s->samples ? s->cpu : -1;

    pthread_mutex_unlock(&s->mutex);

    return cpu;
}


static long
ra_count(ra_conf_t *conf, const sigset_t *unblocked)
{
    if (conf->count_cmd != NULL) {
        return ra_count_cmd(conf->count_cmd, unblocked);
    }

    if (conf->count_file != NULL) {
        return ra_count_file(conf->count_file);
    }

    return ra_count_port(conf->count_port);
}


/*
 * Lines of /proc/net/tcp look like
 *   0: 0100007F:0BB9 0100007F:D3A2 01 00000000:00000000 ...
 * local address:port, remote address:port, state (01 is ESTABLISHED).
 */
static long
ra_count_port(long port)
{
    int           i;
    long          n;
    FILE         *fp;
    char          line[512];
    unsigned int  lport, state;

    static const char  *files[] = { "/proc/net/tcp", "/proc/net/tcp6" };

    n = 0;

    for (i = 0; i < 2; i++) {
        fp = fopen(files[i], "r");
        if (fp == NULL) {
            if (i == 0) {
                ra_log(RA_LOG_ERR, "fopen(\"%s\") failed: %s", files[i],
                       strerror(errno));
                return -1;
            }

            continue;               /* no IPv6 */
        }

        while (fgets(line, sizeof(line), fp) != NULL) {
            if (sscanf(line, " %*u: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x",
                       &lport, &state) == 2
                && state == 0x01 && lport == (unsigned int) port)
            {
                n++;
            }
        }

        fclose(fp);
    }

    return n;
}


static long
ra_count_file(const char *path)
{
    long   n;
    FILE  *fp;

    fp = fopen(path, "r");
    if (fp == NULL) {
        ra_log(RA_LOG_ERR, "fopen(\"%s\") failed: %s", path,
               strerror(errno));
        return -1;
    }

    if (fscanf(fp, " %ld", &n) != 1 || n < 0) {
        ra_log(RA_LOG_ERR, "no count in \"%s\"", path);
        n = -1;
    }

    fclose(fp);

    return n;
}


static long
ra_count_cmd(const char *cmd, const sigset_t *unblocked)
{
    int        status;
    long       n;
    FILE      *fp;
    sigset_t   blocked;

    /* the command must not inherit our blocked SIGTERM and SIGINT */
    pthread_sigmask(SIG_SETMASK, unblocked, &blocked);
    fp = popen(cmd, "r");

    if (fp == NULL) {
        pthread_sigmask(SIG_SETMASK, &blocked, NULL);
        ra_log(RA_LOG_ERR, "popen(\"%s\") failed: %s", cmd, strerror(errno));
        return -1;
    }

    if (fscanf(fp, " %ld", &n) != 1 || n < 0) {
        n = -1;
    }

    /* read the rest so the command is not killed by SIGPIPE */
    while (fgetc(fp) != EOF) {
        /* void */
    }

    status = pclose(fp);
    pthread_sigmask(SIG_SETMASK, &blocked, NULL);

    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ra_log(RA_LOG_ERR, "command \"%s\" failed (status %d)", cmd, status);
        return -1;
    }

    if (n < 0) {
        ra_log(RA_LOG_ERR, "command \"%s\" printed no count", cmd);
    }

    return n;
}


static int
ra_redis_connect(ra_conf_t *conf, ra_redis_t *r)
{
    redisContext   *ctx;
    struct timeval  tv;

    tv.tv_sec = RA_REDIS_TIMEOUT / 1000;
    tv.tv_usec = (RA_REDIS_TIMEOUT % 1000) * 1000;

    if (conf->unix_path != NULL) {
        ctx = redisConnectUnixWithTimeout(conf->unix_path, tv);

    } else {
        ctx = redisConnectWithTimeout(conf->host, conf->port, tv);
    }

    if (ctx == NULL || ctx->err) {
        ra_log(RA_LOG_WARN, "could not connect to Redis: %s, "
               "next try in %ld ms", ctx ? ctx->errstr : "out of memory",
               ra_redis_backoff(r));
        if (ctx != NULL) {
            redisFree(ctx);
        }
        return -1;
    }

    r->ctx = ctx;

    /* a --count-cmd child must not inherit the socket */
    (void) fcntl(ctx->fd, F_SETFD, FD_CLOEXEC);

    if (redisSetTimeout(ctx, tv) != REDIS_OK) {
        ra_log(RA_LOG_WARN, "redisSetTimeout() failed");
        ra_redis_fail(r);
        return -1;
    }

    if (conf->password != NULL
        && ra_redis_call(r, "AUTH", "AUTH %s", conf->password) != 0)
    {
        ra_redis_fail(r);
        return -1;
    }

    if (conf->db != 0
        && ra_redis_call(r, "SELECT", "SELECT %ld", conf->db) != 0)
    {
        ra_redis_fail(r);
        return -1;
    }

    ra_log(RA_LOG_INFO, "connected to Redis");
    r->failures = 0;

    return 0;
}


/* runs one command, fails on a connection or a Redis error */
static int
ra_redis_call(ra_redis_t *r, const char *what, const char *fmt, ...)
{
    int          rc;
    va_list      args;
    redisReply  *reply;

    va_start(args, fmt);
    reply = redisvCommand(r->ctx, fmt, args);
    va_end(args);

    if (reply == NULL) {
        ra_log(RA_LOG_WARN, "Redis %s failed: %s", what, r->ctx->errstr);
        return -1;
    }

    rc = 0;

    if (reply->type == REDIS_REPLY_ERROR) {
        ra_log(RA_LOG_ERR, "Redis %s failed: %s", what, reply->str);
        rc = -1;
    }

    freeReplyObject(reply);

    return rc;
}


/* drops the connection and schedules a reconnect */
static void
ra_redis_fail(ra_redis_t *r)
{
    redisFree(r->ctx);
    r->ctx = NULL;

    ra_log(RA_LOG_INFO, "Redis connection dropped, next try in %ld ms",
           ra_redis_backoff(r));
}


/*
 * Schedules the next connect: capped exponential backoff (100 ms, 200 ms,
 * ... 10 s) with jitter over the upper half, so that many agents restarted
 * together do not reconnect in step.  Returns the delay.
 */
static long
ra_redis_backoff(ra_redis_t *r)
{
    long  delay;

    delay = RA_BACKOFF_MAX;

    if (r->failures < 10) {
        delay = (long) RA_BACKOFF_MIN << r->failures;
        if (delay > RA_BACKOFF_MAX) {
            delay = RA_BACKOFF_MAX;
        }
    }

    r->failures++;

    delay = delay / 2 + random() % (delay / 2 + 1);
    r->next_try = ra_now() + delay;

    return delay;
}


/*
 * With --key, the message in msg (NUL-terminated, size bytes of room) is
 * prefixed with its signature line, "sig1 <ts> <hmac>\n" (ra_sign.c, the
 * code nginx verifies with)
 */

static int
ra_sign(ra_conf_t *conf, const char *kind, char *msg, size_t size)
{
    char    line[RA_SIGN_PREFIX_MAX];
    size_t  len, plen;

    if (conf->key.len == 0) {
        return 0;
    }

    len = strlen(msg);

    plen = ra_sign_prefix(&conf->key, kind, (int64_t) time(NULL), msg, len,
                          line);

    if (plen == 0 || plen + len + 1 > size) {
        ra_log(RA_LOG_ERR, "cannot sign a %s message", kind);
        return -1;
    }

    memmove(msg + plen, msg, len + 1);
    memcpy(msg, line, plen);

    return 0;
}


static int
ra_publish_register(ra_conf_t *conf, ra_redis_t *r)
{
    int   rc;
    char  msg[RA_MSG_MAX];

    memcpy(msg, "{\"url\":", 7);
    ra_json_string(msg + 7, sizeof(msg) - 9, conf->url);
    strcat(msg, "}");

    if (ra_sign(conf, "register", msg, sizeof(msg)) != 0) {
        return -1;
    }

    rc = ra_redis_call(r, "PUBLISH", "PUBLISH %s%s %s", conf->prefix,
                       "register", msg);

    if (rc != 0) {
        if (r->ctx->err) {
            ra_redis_fail(r);
        }
        return -1;
    }

    ra_log(RA_LOG_DEBUG, "%sregister %s", conf->prefix, msg);

    return 0;
}


static int
ra_report(ra_conf_t *conf, ra_redis_t *r, ra_sampler_t *s,
    const sigset_t *unblocked, int draining)
{
    int          i, rc;
    long         n;
    char         msg[RA_MSG_MAX], *p, *last;
    double       cpu;
    redisReply  *reply;

    if (r->ctx == NULL) {
        ra_log(RA_LOG_DEBUG, "not connected to Redis, report skipped");
        return -1;
    }

    n = ra_count(conf, unblocked);

    if (n < 0 && !draining) {
        ra_log(RA_LOG_WARN, "no connection count, report skipped");
        return -1;
    }

    cpu = ra_sampler_get(s, 0);

    p = msg;
    last = msg + sizeof(msg);

    p += snprintf(p, last - p, "{\"url\":");
    p += ra_json_string(p, last - p, conf->url);

    if (n > RA_COUNT_MAX) {
        n = RA_COUNT_MAX;
    }

    if (n >= 0) {
        p += snprintf(p, last - p, ",\"connections\":%ld", n);
    }

    if (cpu >= 0) {
        p += snprintf(p, last - p, ",\"cpu\":%.1f", cpu);
    }

    if (conf->capacity > 0) {
        p += snprintf(p, last - p, ",\"capacity\":%ld", conf->capacity);
    }

    snprintf(p, last - p, ",\"draining\":%s}", draining ? "true" : "false");

    /* the snapshot entry is the very message, signed as signaling */
    if (ra_sign(conf, "signaling", msg, sizeof(msg)) != 0) {
        return -1;
    }

    /* both commands in one round trip */
    redisAppendCommand(r->ctx, "PUBLISH %s%s %s", conf->prefix, "signaling",
                       msg);
    redisAppendCommand(r->ctx, "HSET %s%s %s %s", conf->prefix,
                       RA_SNAPSHOT_KEY, conf->url, msg);

    rc = 0;

    for (i = 0; i < 2; i++) {
        if (redisGetReply(r->ctx, (void **) &reply) != REDIS_OK) {
            ra_log(RA_LOG_WARN, "Redis report failed: %s", r->ctx->errstr);
            ra_redis_fail(r);
            return -1;
        }

        if (reply->type == REDIS_REPLY_ERROR) {
            ra_log(RA_LOG_ERR, "Redis %s failed: %s",
                   i == 0 ? "PUBLISH" : "HSET", reply->str);
            rc = -1;
        }

        freeReplyObject(reply);
    }

    if (rc == 0) {
        ra_log(RA_LOG_DEBUG, "%ssignaling %s", conf->prefix, msg);
    }

    return rc;
}


/* writes str as a quoted JSON string; returns the length written */
static size_t
ra_json_string(char *buf, size_t size, const char *str)
{
    size_t          n;
    unsigned char   c;

    static const char  hex[] = "0123456789abcdef";

    /* the worst case is 6 bytes per byte plus quotes and NUL */
    if (size < strlen(str) * 6 + 3) {
        buf[0] = '\0';
        return 0;
    }

    n = 0;
    buf[n++] = '"';

    for ( /* void */ ; *str; str++) {
        c = (unsigned char) *str;

        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = c;

        } else if (c < 0x20 || c == 0x7f) {
            buf[n++] = '\\';
            buf[n++] = 'u';
            buf[n++] = '0';
            buf[n++] = '0';
            buf[n++] = hex[c >> 4];
            buf[n++] = hex[c & 0xf];

        } else {
            buf[n++] = c;
        }
    }

    buf[n++] = '"';
    buf[n] = '\0';

    return n;
}


static int64_t
ra_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
ra_log(int level, const char *fmt, ...)
{
    char        tbuf[32];
    time_t      now;
    va_list     args;
    struct tm   tm;

    static const char  *levels[] = { "error", "warn", "info", "debug" };

    if (level == RA_LOG_DEBUG && ra_verbose == 0) {
        return;
    }

    now = time(NULL);
    localtime_r(&now, &tm);
    strftime(tbuf, sizeof(tbuf), "%Y/%m/%d %H:%M:%S", &tm);

    fprintf(stderr, "%s [%s] ra-agent: ", tbuf, levels[level]);

    va_start(args, fmt);
    vfprintf(stderr, fmt, args);
    va_end(args);

    fputc('\n', stderr);
}
