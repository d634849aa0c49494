#!/usr/bin/env python3
"""The live placement benchmark (make bench-live).

Real parts only, all on 127.0.0.1: a redis-server on a private port, 8
WebSocket backends (one Node process, bench/live/backends.js) of capacities
1:1:2:2:4:4:1:2 that PUBLISH `signaling` reports out of phase, 2 nginx
instances x 2 workers loading the built module (or 2 HAProxy processes x 2
threads), and one Node driver (bench/live/driver.js) whose WebSocket
clients replay a seeded schedule of rooms. Each policy runs in turn on the
same schedule, with redis, the backends and the fronts restarted between
runs, and the backends sample their live connections every 0.5 s.

    bench/live/run.py [--seeds "1 2 3"] [--periods "1 5 30 300"]
                      [--duration 70] [--policies "oracle ra-redis ..."]

Environment (the Makefile passes them on): SEEDS, PERIODS, DURATION,
POLICIES, BENCH_LIVE_PORT (first of 12 ports, default 19400),
BENCH_LIVE_OUT (results directory), RA_PARAMS (extra room_affinity
parameters, e.g. "choices=3 balance_factor=150"), RA_REDIS_PARAMS (extra
room_affinity_redis parameters, e.g. "directory=on"), LEAVE_MS (the
backends also report when clients left since their last report, at most
once every LEAVE_MS ms: a departure signal; 0, the default, is the origin
design's periodic reports only), KEEP=1 (keep the /tmp run directories:
nginx logs, configs).

See docs/benchmarks.md, "Live placement".
"""

import argparse
import bisect
import json
import math
import os
import random
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HERE = os.path.join(TOP, "bench", "live")
SO = os.path.join(TOP, "build", "ngx_http_room_affinity_module.so")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
NODE = os.environ.get("NODE", "node")

CAP_UNITS = [1, 1, 2, 2, 4, 4, 1, 2]
CAP_UNIT = 100                    # reported capacity = units x 100 conns
SAMPLE_MS = 500
# warm-up: samples below MIN_TOTAL live connections, or taken in the first
# WARMUP_S seconds, are not counted (below a few hundred connections
# peak/ideal measures how coarse rooms are, not placement: one room of 20
# on a backend of 1/17 of the capacity is 8x its share of 40 connections)
MIN_TOTAL = int(os.environ.get("MIN_TOTAL") or 20)
WARMUP_S = float(os.environ.get("WARMUP_S") or 10)

ALL_POLICIES = ["oracle", "ra-redis", "ra-redis-join", "ra-local",
                "nginx-hash", "haproxy"]
# which policies read the reports: they run once per period, the others
# once per seed
PERIODIC = {"ra-redis", "ra-redis-join"}
LABEL = {
    "oracle": ("oracle (exact live counts, greedy)", "direct"),
    "ra-redis": ("room_affinity + Redis reports", "proxy"),
    "ra-redis-join": ("room_affinity + Redis reports", "join"),
    "ra-local": ("room_affinity, no Redis", "proxy"),
    "nginx-hash": ("nginx hash consistent, weights", "proxy"),
    "haproxy": ("HAProxy url_param consistent bf125", "proxy"),
}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- schedule

def make_schedule(seed, duration, rate, life, zipf_s, max_size, burst_s):
    """Rooms arrive as a Poisson process over [0, duration); a room's size
    follows Zipf(zipf_s) on 1..max_size, its lifetime is exponential (mean
    `life`); half its members (rounded up, the first at creation) arrive
    within `burst_s` of its creation, the others uniformly over its life;
    each member goes through front 0 or 1 at random and stays until the
    room ends. Members after the end of the run are dropped."""
    rnd = random.Random(seed)
    weights = [k ** -zipf_s for k in range(1, max_size + 1)]
    cum = []
    acc = 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    rooms = []
    t = 0.0
    n = 0
    while True:
        t += rnd.expovariate(rate)
        if t >= duration:
            break
        n += 1
        size = bisect.bisect_left(cum, rnd.random() * acc) + 1
        lifetime = min(rnd.expovariate(1.0 / life), 6 * life)
        end = t + lifetime
        burst = (size + 1) // 2
        times = [t]
        times += [t + rnd.random() * burst_s for _ in range(burst - 1)]
        times += [t + rnd.random() * lifetime for _ in range(size - burst)]
        members = sorted(
            [round(x, 3), rnd.randrange(2)] for x in times
            if x < end and x < duration)
        rooms.append({"name": "s%d-r%d" % (seed, n), "size": size,
                      "start_s": round(t, 3), "end_s": round(end, 3),
                      "members": members})
    return {"seed": seed, "duration_s": duration, "rate": rate,
            "life_s": life, "zipf_s": zipf_s, "max_size": max_size,
            "burst_s": burst_s, "rooms": rooms}


# ---------------------------------------------------------------- processes

class Procs:
    """Every process the benchmark starts, each in its own process group
    (so that nginx's and HAProxy's children go with it); stopped by id."""

    def __init__(self):
        self.procs = []

    def start(self, name, argv, logfile, cwd=None):
        out = open(logfile, "ab")
        p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=cwd,
                             start_new_session=True)
        out.close()
        self.procs.append((name, p))
        return p

    def check(self):
        for name, p in self.procs:
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s" % (name, p.returncode))

    def stop_all(self):
        # redis last: stopped with the others, it closed an nginx worker's
        # link before the worker had exited, once in 18 runs, and the
        # worker logged it as an error
        last = [x for x in self.procs if x[0] == "redis"]
        for group in ([x for x in self.procs if x[0] != "redis"], last):
            for _, p in group:
                if p.poll() is None:
                    try:
                        os.killpg(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            deadline = time.time() + 8
            for _, p in group:
                try:
                    p.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    pass
        for _, p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)   # stragglers of the group
            except (ProcessLookupError, PermissionError):
                pass
            if p.poll() is None:
                try:
                    p.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    pass
        self.procs = []


def wait_until(what, fn, timeout):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:             # noqa: BLE001 - retried
            last = e
        time.sleep(0.05)
    raise RuntimeError("timed out waiting for %s (%s)" % (what, last))


def port_open(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def redis_ping(port):
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
        s.sendall(b"*1\r\n$4\r\nPING\r\n")
        return s.recv(64).startswith(b"+PONG")


def http_json(port, path, timeout=3):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=timeout) as r:
        return json.loads(r.read().decode())


# ---------------------------------------------------------------- configs

def nginx_conf(prefix, policy, inst, front, backends, rport, stale_s,
               ra_params):
    ra = policy.startswith("ra-")
    lines = ["load_module %s;" % SO,
             "worker_processes 2;",
             "worker_rlimit_nofile 16384;",
             "daemon off;",
             "master_process on;",
             "pid logs/nginx.pid;",
             "error_log logs/error.log notice;",
             "events { worker_connections 8192; }",
             "http {",
             "    access_log off;",
             "    client_body_temp_path tmp/body;",
             "    proxy_temp_path tmp/proxy;",
             "    fastcgi_temp_path tmp/fastcgi;",
             "    uwsgi_temp_path tmp/uwsgi;",
             "    scgi_temp_path tmp/scgi;"]
    if policy in ("ra-redis", "ra-redis-join"):
        lines.append("    room_affinity_redis 127.0.0.1:%d %s;" % (
            rport, os.environ.get("RA_REDIS_PARAMS", "")))
    lines.append("    upstream chat {")
    if ra:
        params = {"zone": "live_rooms:4m", "stale": "%ds" % stale_s,
                  "slow_start": "0"}
        for kv in ra_params.split():
            k, _, v = kv.partition("=")
            params[k] = v
        lines.append("        room_affinity $arg_roomName %s;" % " ".join(
            "%s=%s" % kv for kv in params.items()))
    else:
        lines.append("        hash $arg_roomName consistent;")
    for port, units in zip(backends, CAP_UNITS):
        lines.append("        server 127.0.0.1:%d weight=%d;" % (port, units))
    lines += ["    }",
              "    server {",
              "        listen 127.0.0.1:%d;" % front,
              "        location /socket {",
              "            proxy_pass http://chat;",
              "            proxy_http_version 1.1;",
              "            proxy_set_header Upgrade $http_upgrade;",
              '            proxy_set_header Connection "upgrade";',
              "            proxy_set_header X-Bench-Via nginx%d;" % inst,
              "            proxy_read_timeout 1h;",
              "            proxy_send_timeout 1h;",
              "        }"]
    if ra:
        lines += ["        location = /signaling/join {",
                  "            room_affinity_join chat;",
                  "        }",
                  "        location = /ra-status {",
                  "            room_affinity_status;",
                  "        }"]
    lines += ["    }", "}", ""]
    os.makedirs(os.path.join(prefix, "conf"), exist_ok=True)
    os.makedirs(os.path.join(prefix, "logs"), exist_ok=True)
    tmp = os.path.join(prefix, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o777)            # workers run as nobody when root starts
    path = os.path.join(prefix, "conf", "nginx.conf")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


def haproxy_conf(prefix, inst, front, backends):
    lines = ["global",
             "    nbthread 2",
             "    maxconn 8000",
             "defaults",
             "    mode http",
             "    maxconn 8000",
             "    timeout connect 5s",
             "    timeout client 1h",
             "    timeout server 1h",
             "    timeout tunnel 1h",
             "frontend fe",
             "    bind 127.0.0.1:%d" % front,
             "    default_backend chat",
             "backend chat",
             "    balance url_param roomName",
             "    hash-type consistent",
             "    hash-balance-factor 125",
             "    http-request set-header X-Bench-Via haproxy%d" % inst]
    for i, (port, units) in enumerate(zip(backends, CAP_UNITS)):
        lines.append("    server b%d 127.0.0.1:%d weight %d" % (i, port, units))
    os.makedirs(prefix, exist_ok=True)
    path = os.path.join(prefix, "haproxy.cfg")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------- measures

def p99(xs):
    s = sorted(xs)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


def peak_ideal(samples, duration_s, warmup_s=WARMUP_S):
    """Peak/ideal of the samples taken while the schedule ran.

    A sample from duration_s on (the sampler's clock starts a little before
    the driver's) is left out: the driver is closing every connection then,
    and the last one, taken on /stop, caught 31 connections of which 10 on
    one small backend (peak/ideal 4.39) in a run of no Redis, seed 2, which
    moved that run's p99 up by a rank, from 1.71 to 1.90.
    """
    caps = [u * CAP_UNIT for u in CAP_UNITS]
    total_cap = sum(caps)
    ratios, totals = [], []
    for row in samples:
        counts = row[1:]
        total = sum(counts)
        if (total < MIN_TOTAL or row[0] < warmup_s * 1000
                or row[0] >= duration_s * 1000):
            continue
        ideal = total / total_cap
        peak = max(c / cap for c, cap in zip(counts, caps))
        ratios.append(peak / ideal)
        totals.append(total)
    if not ratios:
        return None
    return {"mean": sum(ratios) / len(ratios), "p99": p99(ratios),
            "max": max(ratios), "samples": len(ratios),
            "conns_mean": sum(totals) / len(totals), "conns_max": max(totals)}


def log_summary(path):
    levels = {}
    subscribed = 0
    lines = []
    try:
        with open(path, errors="replace") as f:
            for line in f:
                for lv in ("emerg", "alert", "crit", "error", "warn",
                           "notice"):
                    if "[%s]" % lv in line:
                        levels[lv] = levels.get(lv, 0) + 1
                        if lv not in ("notice",) and len(lines) < 5:
                            lines.append(line.strip()[:300])
                        break
                if "room_affinity: subscribed to" in line:
                    subscribed += 1
    except FileNotFoundError:
        pass
    return {"levels": levels, "subscribed_lines": subscribed,
            "first_problems": lines}


def verify_status(st, stale_s):
    """What room_affinity's status says about the reports it holds."""
    ups = st["upstreams"]["chat"]
    backs = ups["backends"]
    reported = [b for b in backs if b.get("report")]
    ages = [b["report"]["age_ms"] for b in reported]
    redis = st.get("redis") or {}
    msgs = redis.get("messages") or {}
    return {
        "redis_connected": bool(redis.get("connected")),
        "backends": len(backs),
        "reported": len(reported),
        "report_age_ms_max": max(ages) if ages else None,
        "fresh": sum(1 for a in ages if a < stale_s * 1000),
        "applied": msgs.get("applied"),
        "rejected": msgs.get("rejected"),
        "unknown_backend": msgs.get("unknown_backend"),
        "live": [b.get("live") for b in backs],
        "placed": [b.get("placed") for b in backs],
        "rooms_shared": redis.get("rooms_shared"),
        "zone": {k: ups["zone"].get(k) for k in
                 ("rooms", "evicted", "moved", "unrecorded")},
        "lifetime": ups.get("lifetime"),
    }


# ---------------------------------------------------------------- one run

NPORTS = 12                         # redis, 8 backends, control, 2 fronts


def ports_in_use(base):
    busy = []
    for port in range(base, base + NPORTS):
        try:
            port_open(port)
            busy.append(port)
        except OSError:
            pass
    return busy


def run_one(ctx, policy, period, seed, sched_path, duration):
    base = ctx["port"]
    # another bench-live (or anything) on these ports would answer our
    # pings and take our clients: refuse to measure it
    busy = ports_in_use(base)
    if busy:
        raise RuntimeError("ports %s are in use (another bench-live? set "
                           "BENCH_LIVE_PORT)" % busy)
    rport = base
    backends = [base + 1 + i for i in range(len(CAP_UNITS))]
    ctl = base + 9
    fronts = [base + 10, base + 11]
    stale_s = max(30, 3 * period)
    name = "%s-p%s-s%d" % (policy, period, seed)
    rdir = os.path.join(ctx["tmp"], name)
    os.makedirs(rdir)
    procs = ctx["procs"]
    result = {"policy": policy, "flow": LABEL[policy][1],
              "period_s": period if policy in PERIODIC else None,
              "seed": seed, "stale_s": stale_s if policy.startswith("ra-")
              else None,
              "leave_ms": ctx["leave_ms"] if policy in PERIODIC else 0}
    try:
        procs.start("redis", ["redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--daemonize", "no"],
                    os.path.join(rdir, "redis.log"))
        wait_until("redis", lambda: redis_ping(rport), 10)
        procs.check()

        if policy == "haproxy":
            for i, f in enumerate(fronts):
                cfg = haproxy_conf(os.path.join(rdir, "haproxy%d" % i), i, f,
                                   backends)
                procs.start("haproxy%d" % i, ["haproxy", "-db", "-f", cfg],
                            os.path.join(rdir, "haproxy%d.log" % i))
        elif policy != "oracle":
            for i, f in enumerate(fronts):
                prefix = os.path.join(rdir, "nginx%d" % i)
                nginx_conf(prefix, policy, i, f, backends, rport, stale_s,
                           ctx["ra_params"])
                procs.start("nginx%d" % i,
                            [NGINX, "-p", prefix + "/", "-c",
                             "conf/nginx.conf"],
                            os.path.join(rdir, "nginx%d.out" % i))
        if policy != "oracle":
            for f in fronts:
                wait_until("front :%d" % f, lambda f=f: port_open(f), 10)
        if policy in PERIODIC:
            for f in fronts:
                wait_until("nginx :%d subscribed" % f, lambda f=f: http_json(
                    f, "/ra-status")["redis"]["connected"], 15)

        procs.start("backends", [NODE, os.path.join(HERE, "backends.js"),
                                 "--ports", ",".join(map(str, backends)),
                                 "--caps", ",".join(
                                     str(u * CAP_UNIT) for u in CAP_UNITS),
                                 "--redis", "127.0.0.1:%d" % rport,
                                 "--period", str(period),
                                 "--seed", str(seed), "--ctl", str(ctl),
                                 "--sample-ms", str(SAMPLE_MS),
                                 "--leave-ms", str(ctx["leave_ms"])],
                    os.path.join(rdir, "backends.log"))
        procs.check()
        wait_until("backends", lambda: (
            lambda r: r["redis"] and min(r["reports"]) >= 1)(
                http_json(ctl, "/ready")), 15)
        for b in backends:
            wait_until("backend :%d" % b, lambda b=b: port_open(b), 5)
        if policy in PERIODIC:
            # every backend's first report applied in both instances
            for f in fronts:
                wait_until("reports in nginx :%d" % f, lambda f=f: all(
                    b.get("report") for b in http_json(f, "/ra-status")
                    ["upstreams"]["chat"]["backends"]), 15)
        procs.check()

        mode = {"oracle": "oracle", "ra-redis-join": "join"}.get(policy,
                                                                  "proxy")
        http_json(ctl, "/start")
        t0 = time.time()
        drv = subprocess.run(
            [NODE, os.path.join(HERE, "driver.js"), "--schedule", sched_path,
             "--mode", mode, "--fronts",
             ",".join(map(str, fronts if ctx["fronts"] == 2
                           else [fronts[0]] * len(fronts))),
             "--backends", ",".join(map(str, backends)),
             "--caps", ",".join(str(u * CAP_UNIT) for u in CAP_UNITS),
             "--deadline-s", str(duration + 5)],
            stdout=subprocess.PIPE, stderr=open(os.path.join(rdir,
                                                             "driver.err"),
                                                "wb"),
            timeout=duration + 40, start_new_session=True)
        result["driver_s"] = round(time.time() - t0, 1)
        # the status while the last connections are gone but nothing reset
        if policy.startswith("ra-"):
            result["status"] = []
            for f in fronts:
                try:
                    st = http_json(f, "/ra-status")
                    result["status"].append(verify_status(st, stale_s))
                except Exception as e:            # noqa: BLE001
                    result["status"].append({"error": str(e)})
        http_json(ctl, "/stop")
        stats = http_json(ctl, "/stats", timeout=10)
        procs.check()
        try:
            drv_out = json.loads(drv.stdout.decode().strip().splitlines()[-1])
        except (IndexError, ValueError):
            drv_out = {"error": "driver printed nothing",
                       "rc": drv.returncode}
        result["driver"] = drv_out
        result["backends"] = {k: stats[k] for k in
                              ("split_ever", "split_in_sample", "upgrades",
                               "via", "reports", "report_errors", "rooms",
                               "leave_reports")}
        result["measure"] = peak_ideal(stats["samples"], duration)
        # the same without the time warm-up (only samples under MIN_TOTAL
        # left out)
        result["measure_no_warmup"] = peak_ideal(stats["samples"], duration,
                                                 0)
        with open(os.path.join(ctx["out"], "samples-%s.json" % name),
                  "w") as f:
            json.dump({"caps": stats["caps"], "sample_ms": SAMPLE_MS,
                       "samples": stats["samples"]}, f)
    finally:
        procs.stop_all()
    if policy not in ("oracle", "haproxy"):
        result["error_logs"] = [log_summary(os.path.join(
            rdir, "nginx%d" % i, "logs", "error.log")) for i in range(2)]
    result["checks"] = checks(result, policy)
    return result


def checks(r, policy):
    """Whether what was measured is what the policy claims to be."""
    out = []
    up = r["backends"]["upgrades"]
    drv = r["driver"]
    if policy in ("oracle", "ra-redis-join"):
        out.append(("all connections direct", up["proxied"] == 0
                    and up["direct"] > 0,
                    "%d direct, %d proxied" % (up["direct"], up["proxied"])))
    else:
        out.append(("all connections proxied", up["direct"] == 0
                    and up["proxied"] > 0,
                    "%d proxied (%s), %d direct" % (
                        up["proxied"], ", ".join(
                            "%s %d" % kv for kv in sorted(r["backends"]
                                                          ["via"].items())),
                        up["direct"])))
    if policy == "ra-redis-join":
        out.append(("join urls are backends", drv.get("join_url_mismatch")
                    == 0, "%s mismatches" % drv.get("join_url_mismatch")))
        lv = [sum(x for x in s.get("live") or [] if x) for s in r["status"]]
        out.append(("nginx proxied nothing", all(v == 0 for v in lv),
                    "nginx live %s" % lv))
    if policy in PERIODIC:
        for i, s in enumerate(r["status"]):
            ok = (s.get("redis_connected") and s.get("reported") == 8
                  and s.get("fresh") == 8 and (s.get("applied") or 0) > 0)
            out.append(("nginx%d has fresh reports" % i, ok,
                        "connected %s, %s/8 reported, %s fresh, max age "
                        "%s ms, %s messages applied" % (
                            s.get("redis_connected"), s.get("reported"),
                            s.get("fresh"), s.get("report_age_ms_max"),
                            s.get("applied"))))
        for i, e in enumerate(r["error_logs"]):
            out.append(("nginx%d error.log: subscribed" % i,
                        e["subscribed_lines"] >= 1,
                        "%d subscribe lines, levels %s" % (
                            e["subscribed_lines"], e["levels"])))
    if policy in PERIODIC and r.get("leave_ms"):
        n = sum(r["backends"].get("leave_reports") or [])
        out.append(("backends reported departures", n > 0,
                    "%d reports on departures" % n))
    if policy == "ra-local":
        for i, s in enumerate(r["status"]):
            out.append(("nginx%d without redis" % i,
                        "redis_connected" in s and not s["redis_connected"]
                        and not s.get("reported"),
                        "%s reports" % s.get("reported")))
    if "error_logs" in r:
        bad = sum(e["levels"].get(lv, 0) for e in r["error_logs"]
                  for lv in ("emerg", "alert", "crit", "error"))
        out.append(("no error/crit/alert in nginx logs", bad == 0,
                    "%d lines" % bad))
    if r.get("measure") is None:
        out.append(("samples above %d conns" % MIN_TOTAL, False, "none"))
    return [{"check": c, "ok": bool(ok), "detail": d} for c, ok, d in out]


# ---------------------------------------------------------------- report

def period_label(period_s, leave_ms):
    """300s, or 300s+L250 when the backends also report departures."""
    if period_s is None:
        return "-"
    return "%ss" % period_s + ("+L%d" % leave_ms if leave_ms else "")


def fmt(x, spec="%.2f"):
    return "-" if x is None else spec % x


def table(results, oracle_of):
    head = ["seed", "policy", "flow", "period", "mean", "p99", "mean/orc",
            "p99/orc", "splits", "failed", "conns"]
    rows = []
    for r in results:
        m = r.get("measure") or {}
        o = oracle_of.get(r["seed"]) or {}
        rm = (m["mean"] / o["mean"]) if m and o else None
        rp = (m["p99"] / o["p99"]) if m and o else None
        r["ratio_to_oracle"] = {"mean": rm, "p99": rp}
        rows.append([str(r["seed"]), LABEL[r["policy"]][0], r["flow"],
                     period_label(r["period_s"], r.get("leave_ms")),
                     fmt(m.get("mean")), fmt(m.get("p99")), fmt(rm),
                     fmt(rp), str(r["backends"]["split_ever"]),
                     str(r["driver"].get("failed_upgrades", "?")),
                     fmt(m.get("conns_mean"), "%.0f")])
    return render(head, rows)


def render(head, rows):
    w = [max(len(x) for x in col) for col in zip(head, *rows)]
    line = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w[i]) if i < 3 else c.rjust(w[i])
        for i, c in enumerate(cells))
    return "\n".join([line(head), line(["-" * x for x in w])]
                     + [line(r) for r in rows])


def medians(results):
    """Across seeds: the median of each (policy, period)'s figures."""
    groups = {}
    for r in results:
        if not r.get("measure"):
            continue
        groups.setdefault((r["policy"], r["period_s"]), []).append(r)
    head = ["policy", "flow", "period", "seeds", "mean", "p99", "mean/orc",
            "p99/orc", "splits", "failed"]
    rows = []

    def med(xs):
        xs = sorted(x for x in xs if x is not None)
        if not xs:
            return None
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2
    out = []
    for (pol, per), rs in groups.items():
        row = {"policy": pol, "flow": LABEL[pol][1], "period_s": per,
               "seeds": [r["seed"] for r in rs],
               "mean": med([r["measure"]["mean"] for r in rs]),
               "p99": med([r["measure"]["p99"] for r in rs]),
               "mean_to_oracle": med([r["ratio_to_oracle"]["mean"]
                                      for r in rs]),
               "p99_to_oracle": med([r["ratio_to_oracle"]["p99"]
                                     for r in rs]),
               "splits": med([r["backends"]["split_ever"] for r in rs]),
               "failed": med([r["driver"].get("failed_upgrades")
                              for r in rs])}
        out.append(row)
        rows.append([LABEL[pol][0], row["flow"],
                     period_label(per, rs[0].get("leave_ms")), str(len(rs)),
                     fmt(row["mean"]), fmt(row["p99"]),
                     fmt(row["mean_to_oracle"]), fmt(row["p99_to_oracle"]),
                     fmt(row["splits"], "%g"), fmt(row["failed"], "%g")])
    return out, render(head, rows)


# ---------------------------------------------------------------- main

def main():
    env = os.environ.get
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default=env("SEEDS") or "1")
    ap.add_argument("--periods", default=env("PERIODS") or "5")
    ap.add_argument("--duration", type=float,
                    default=float(env("DURATION") or 70))
    ap.add_argument("--policies", default=env("POLICIES")
                    or " ".join(ALL_POLICIES))
    ap.add_argument("--rate", type=float, default=float(env("RATE") or 12),
                    help="new rooms per second")
    ap.add_argument("--life", type=float, default=float(env("LIFE") or 20),
                    help="mean room lifetime, seconds")
    ap.add_argument("--zipf", type=float, default=1.5)
    ap.add_argument("--max-size", type=int, default=40)
    ap.add_argument("--burst", type=float, default=0.2,
                    help="seconds over which a room's first half arrives")
    ap.add_argument("--port", type=int,
                    default=int(env("BENCH_LIVE_PORT") or 19400))
    ap.add_argument("--out", default=env("BENCH_LIVE_OUT") or os.path.join(
        TOP, "bench", "out", time.strftime("live-%Y%m%d-%H%M%S")))
    args = ap.parse_args()

    seeds = [int(s) for s in args.seeds.split()]
    periods = [float(p) if "." in p else int(p) for p in args.periods.split()]
    policies = [p for p in args.policies.split()]
    for p in policies:
        if p not in ALL_POLICIES:
            ap.error("unknown policy %s (known: %s)" % (p, ALL_POLICIES))
    skipped = []
    if "haproxy" in policies and not shutil.which("haproxy"):
        policies.remove("haproxy")
        skipped.append("haproxy: not installed, skipped")
    if not os.path.exists(SO):
        sys.exit("build the module first: make module")
    if not os.path.isdir(os.path.join(TOP, "examples", "node_modules", "ws")):
        sys.exit("the Node packages are missing: npm ci --prefix examples")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    busy = ports_in_use(args.port)
    if busy:
        sys.exit("bench-live: ports %s are in use (another bench-live? set "
                 "BENCH_LIVE_PORT to the first of %d free ports)"
                 % (busy, NPORTS))
    os.makedirs(args.out, exist_ok=True)
    ctx = {"procs": Procs(), "port": args.port, "out": args.out,
           "tmp": tempfile.mkdtemp(prefix="ra-live."),
           "ra_params": env("RA_PARAMS") or "",
           "leave_ms": int(env("LEAVE_MS") or 0),
           # FRONTS=1: every member through the first instance (the
           # second runs idle), to count splits within one instance
           "fronts": 1 if (env("FRONTS") or "2") == "1" else 2}

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    runs = []
    for seed in seeds:
        for pol in policies:
            for per in (periods if pol in PERIODIC else periods[:1]):
                runs.append((seed, pol, per))
    est = len(runs) * (args.duration + 8)
    log("bench-live: %d runs of %.0f s (about %.0f min), results in %s"
        % (len(runs), args.duration, est / 60, args.out))
    for s in skipped:
        log("bench-live: " + s)

    results = []
    failed_runs = []
    interrupted = False
    try:
        scheds = {}
        for seed in seeds:
            sched = make_schedule(seed, args.duration, args.rate, args.life,
                                  args.zipf, args.max_size, args.burst)
            path = os.path.join(args.out, "schedule-s%d.json" % seed)
            with open(path, "w") as f:
                json.dump(sched, f)
            scheds[seed] = path
            nm = sum(len(r["members"]) for r in sched["rooms"])
            log("seed %d: %d rooms, %d members" % (seed, len(sched["rooms"]),
                                                   nm))
        for i, (seed, pol, per) in enumerate(runs):
            log("[%d/%d] seed %d, %s, %s, period %s s ..." % (
                i + 1, len(runs), seed, LABEL[pol][0], LABEL[pol][1], per))
            try:
                r = run_one(ctx, pol, per, seed, scheds[seed], args.duration)
            except (RuntimeError, OSError, ValueError, KeyError,
                    subprocess.TimeoutExpired) as e:
                log("    run failed: %s" % e)
                failed_runs.append({"seed": seed, "policy": pol,
                                    "period_s": per, "error": str(e)})
                continue
            m = r.get("measure") or {}
            log("    mean %s p99 %s, splits %d, failed %s, %s conns mean"
                % (fmt(m.get("mean")), fmt(m.get("p99")),
                   r["backends"]["split_ever"],
                   r["driver"].get("failed_upgrades"),
                   fmt(m.get("conns_mean"), "%.0f")))
            for c in r["checks"]:
                log("    %s %s: %s" % ("ok  " if c["ok"] else "FAIL",
                                       c["check"], c["detail"]))
            results.append(r)
    except KeyboardInterrupt as e:
        interrupted = True
        log("bench-live: interrupted (%s), cleaning up" % (e or "Ctrl-C"))
    finally:
        ctx["procs"].stop_all()
        if env("KEEP") == "1":
            log("bench-live: run directories kept in %s" % ctx["tmp"])
        else:
            shutil.rmtree(ctx["tmp"], ignore_errors=True)

    oracle_of = {r["seed"]: r.get("measure") for r in results
                 if r["policy"] == "oracle"}
    text = table(results, oracle_of)
    med, medtext = medians(results) if len(seeds) > 1 else (None, None)
    failed_checks = [(r["policy"], r["period_s"], r["seed"], c["check"])
                     for r in results for c in r["checks"] if not c["ok"]]
    print()
    print("peak/ideal = max over backends of conns/capacity over total "
          "conns/total capacity,")
    print("sampled every %.1f s (samples of the first %g s or under %d "
          "conns skipped); splits = rooms whose members"
          % (SAMPLE_MS / 1000, WARMUP_S, MIN_TOTAL))
    print("landed on 2+ backends; failed = upgrades (or joins) that failed;"
          " conns = mean live conns")
    print()
    print(text)
    if medtext:
        print()
        print("medians over seeds %s:" % " ".join(map(str, seeds)))
        print(medtext)
    for s in skipped:
        print(s)
    for f in failed_runs:
        print("RUN FAILED: seed %(seed)s %(policy)s period %(period_s)s: "
              "%(error)s" % f)
    if failed_checks:
        print("\nFAILED CHECKS (figures of these runs are suspect):")
        for f in failed_checks:
            print("  seed %s %s period %s: %s" % (f[2], f[0], f[1], f[3]))
    doc = {"config": {"seeds": seeds, "periods": periods,
                      "duration_s": args.duration, "rate": args.rate,
                      "life_s": args.life, "zipf_s": args.zipf,
                      "max_size": args.max_size, "burst_s": args.burst,
                      "capacities": [u * CAP_UNIT for u in CAP_UNITS],
                      "sample_ms": SAMPLE_MS, "min_total": MIN_TOTAL,
                      "warmup_s": WARMUP_S,
                      "nginx_instances": 2, "nginx_workers": 2,
                      "ra_params": ctx["ra_params"],
                      "leave_ms": ctx["leave_ms"]},
           "skipped": skipped, "interrupted": interrupted,
           "failed_runs": failed_runs,
           "results": results, "medians": med, "table": text,
           "failed_checks": failed_checks}
    path = os.path.join(args.out, "results.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    with open(os.path.join(args.out, "table.txt"), "w") as f:
        f.write(text + "\n" + (("\n" + medtext + "\n") if medtext else ""))
    print("\nresults: %s" % path)
    return 1 if interrupted or failed_runs or not results else 0


if __name__ == "__main__":
    sys.exit(main())
