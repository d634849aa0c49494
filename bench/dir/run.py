#!/usr/bin/env python3
"""The room directory benchmark (make bench-dir, docs/benchmarks.md).

Real parts only, all on 127.0.0.1: a redis-server on a private port, one
nginx serving 4 backends that answer their own name, and 3 nginx instances
x 2 workers loading the built module in front of them, configured alike.
An asyncio client replays a seeded schedule: ROOMS rooms whose MEMBERS
members each arrive within SPREAD ms of the room's first, through random
instances, RATE new rooms a second.  Kept-alive connections, HTTP/1.1.

Runs, each on fresh processes and a fresh Redis:
  pubsub    directory=off: placements shared after the fact (the
            status quo)
  directory directory=on
  restart   directory=on, Redis killed in the middle of the schedule and
            started again OUTAGE ms later
and then, on an idle directory=on cluster and an idle directory=off one,
the latency of LAT sequential first requests of new rooms and of the
same rooms again (known rooms), and the directory's calls for the latter.

A room is split when its members were answered by more than one
backend.  For the restart run: the splits the instances report
(directory.splits), and the time from Redis's return until every room
placed without the directory was reconciled and the instances agree on
every room.

    bench/dir/run.py [--rooms 10000] [--rate 1000] [--members 3]
                     [--spread 50] [--outage 1000] [--lat 2000] [--seed 1]

Environment: BENCH_DIR_PORT (first of 20 ports, default 19600), NGINX,
REDIS_SERVER, KEEP=1 (keep the run directory).
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SO = os.path.join(TOP, "build", "ngx_http_room_affinity_module.so")
NGINX = os.environ.get("NGINX", "/usr/sbin/nginx")
REDIS = os.environ.get("REDIS_SERVER", "redis-server")
PORT = int(os.environ.get("BENCH_DIR_PORT") or 19600)

REDIS_PORT = PORT
BACKENDS = [PORT + 1 + i for i in range(4)]
FRONTS = [PORT + 11 + i for i in range(3)]


def wait_port(port, secs=10):
    end = time.time() + secs
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class Cluster:
    def __init__(self, root, directory):
        self.root = root
        self.directory = directory
        self.procs = []
        self.redis = None

    def start_redis(self):
        self.redis = subprocess.Popen(
            [REDIS, "--port", str(REDIS_PORT), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(REDIS_PORT):
            sys.exit("redis-server did not start")

    def stop_redis(self):
        if self.redis:
            self.redis.kill()
            self.redis.wait()
            self.redis = None

    def nginx(self, name, conf):
        d = os.path.join(self.root, name)
        os.makedirs(os.path.join(d, "logs"), exist_ok=True)
        with open(os.path.join(d, "nginx.conf"), "w") as f:
            f.write(conf)
        p = subprocess.Popen([NGINX, "-p", d + "/", "-c", "nginx.conf"],
                             stdout=subprocess.DEVNULL,
                             stderr=open(os.path.join(d, "stderr.log"), "w"))
        self.procs.append(p)

    def start(self):
        self.start_redis()
        servers = "".join(
            "    server { listen 127.0.0.1:%d; return 200 \"b%d\\n\"; }\n"
            % (p, i + 1) for i, p in enumerate(BACKENDS))
        self.nginx("backends", """
daemon off; master_process on; worker_processes 1;
error_log logs/error.log warn; pid logs/nginx.pid;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000;
%s}
""" % servers)
        upstream = "".join("        server 127.0.0.1:%d;\n" % p
                           for p in BACKENDS)
        for i, port in enumerate(FRONTS):
            self.nginx("front%d" % i, """
load_module %s;
daemon off; master_process on; worker_processes 2;
error_log logs/error.log notice; pid logs/nginx.pid;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    room_affinity_redis 127.0.0.1:%d directory=%s %s;
    upstream chat {
        room_affinity $arg_room zone=chat:32m;
%s        keepalive 64;
    }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location = /status { room_affinity_status; }
    }
}
""" % (SO, REDIS_PORT, "on" if self.directory else "off",
       os.environ.get("RA_REDIS_PARAMS", ""), upstream, port))
        for port in BACKENDS[:1] + FRONTS:
            if not wait_port(port):
                sys.exit("nginx did not start on %d" % port)
        time.sleep(1.0)    # the Redis links are up

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGQUIT)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        self.stop_redis()


def status(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/status" % port,
                                timeout=5) as r:
        return json.load(r)


def dir_pair():
    u = r = 0
    for port in FRONTS:
        d = status(port)["upstreams"]["chat"].get("directory", {})
        u += d.get("unconfirmed", 0)
        r += d.get("reconciled", 0)
    return u, r


def split_logged(root):
    """the rooms the instances logged as split (and moved)"""
    rooms = set()
    for i in range(len(FRONTS)):
        try:
            with open(os.path.join(root, "front%d" % i, "logs",
                                   "error.log")) as f:
                for line in f:
                    k = line.find('was split')
                    if k > 0:
                        rooms.add(line.split('room "', 1)[1].split('"', 1)[0])
        except OSError:
            pass
    return rooms


def dir_sum(field):
    n = 0
    for port in FRONTS:
        n += status(port)["upstreams"]["chat"].get("directory", {}).get(
            field, 0)
    return n


class Pool:
    """kept-alive HTTP/1.1 connections to one nginx"""

    def __init__(self, port):
        self.port = port
        self.free = []

    async def get(self, path):
        if self.free:
            r, w = self.free.pop()
        else:
            r, w = await asyncio.open_connection("127.0.0.1", self.port)
        w.write(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        head = await r.readuntil(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        body = await r.readexactly(n)
        self.free.append((r, w))
        return head.split(b" ", 2)[1].decode(), body.decode().strip()


def schedule(args, rng):
    """(time, room, member) in time order"""
    ev = []
    for i in range(args.rooms):
        t0 = i / args.rate
        for m in range(args.members):
            dt = 0 if m == 0 else rng.uniform(0, args.spread / 1000)
            ev.append((t0 + dt, "r%d" % i, m))
    ev.sort()
    return ev


async def replay(args, ev, rng, during=None):
    pools = [Pool(p) for p in FRONTS]
    answers = {}
    errors = [0]
    start = time.time()
    late = [0.0]

    async def one(room, pool):
        try:
            st, body = await pool.get("/?room=" + room)
            if st != "200":
                errors[0] += 1
            answers.setdefault(room, []).append(body)
        except Exception:
            errors[0] += 1

    tasks = []
    if during:
        tasks.append(asyncio.ensure_future(during(start)))
    for t, room, _ in ev:
        delay = start + t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            late[0] = max(late[0], -delay)
        tasks.append(asyncio.ensure_future(one(room, rng.choice(pools))))
    await asyncio.gather(*tasks)
    return answers, errors[0], late[0], time.time() - start


def agree(rooms):
    """rooms that the instances holding them hold on different backends
    (read from the status: asking would place the room where it is not
    held, itself within directory_wait)"""
    apart = 0
    for room in rooms:
        got = {}
        for fp in FRONTS:
            try:
                with urllib.request.urlopen(
                        "http://127.0.0.1:%d/status?room=%s" % (fp, room),
                        timeout=5) as r:
                    got[fp] = json.load(r)["backend"]
            except urllib.error.HTTPError:
                pass            # 404: not held there
        if len(set(got.values())) > 1:
            apart += 1
            if os.environ.get("KEEP"):
                print("apart: %s %s" % (room, got), file=sys.stderr)
    return apart


def run_load(args, name, directory, outage=False):
    root = tempfile.mkdtemp(prefix="ra-bench-dir-")
    cl = Cluster(root, directory)
    cl.start()
    rng = random.Random(args.seed)
    ev = schedule(args, rng)
    res = {"run": name}
    marks = {}

    async def restart(start):
        loop = asyncio.get_event_loop()
        half = args.rooms / args.rate / 2
        await asyncio.sleep(max(0, start + half - time.time()))
        cl.stop_redis()
        marks["down"] = time.time()
        await asyncio.sleep(args.outage / 1000)
        await loop.run_in_executor(None, cl.start_redis)
        marks["up"] = time.time()
        marks["unconfirmed_at_return"] = await loop.run_in_executor(
            None, dir_sum, "unconfirmed")
        # until every room placed without the directory so far is
        # reconciled (new ones may follow while traffic goes on)
        while time.time() - marks["up"] < 30:
            u, r = await loop.run_in_executor(None, dir_pair)
            if r >= u:
                marks["reconciled"] = time.time()
                break
            await asyncio.sleep(0.02)

    try:
        answers, errors, late, took = asyncio.run(
            replay(args, ev, rng, restart if outage else None))
        split = set(k for k, v in answers.items() if len(set(v)) > 1)
        res.update(rooms=len(answers), requests=len(ev), errors=errors,
                   seconds=round(took, 2), max_late_ms=round(late * 1000, 1),
                   split_rooms=len(split))
        if directory:
            if outage:
                res["outage_ms"] = round((marks["up"] - marks["down"]) * 1000)
                res["unconfirmed_at_return"] = marks["unconfirmed_at_return"]
                res["reconciled_after_redis_back_ms"] = round(
                    (marks["reconciled"] - marks["up"]) * 1000) \
                    if "reconciled" in marks else None
            time.sleep(1)
            for f in ("calls", "misses", "hits", "adopted", "lost_races",
                      "unconfirmed", "reconciled", "splits", "restored",
                      "errors"):
                res[f] = dir_sum(f)
            rtt = [status(port)["upstreams"]["chat"]["directory"]["rtt_us"]
                   for port in FRONTS]
            res["rtt_us_max"] = max(x["max"] for x in rtt)
            res["rtt_us_le"] = {k: sum(x["le"][k] for x in rtt)
                                for k in rtt[0]["le"]}
            logged = split_logged(root)
            res["split_rooms_logged"] = len(logged)
            res["split_rooms_not_logged"] = len(split - logged)
            res["rooms_apart_after"] = agree(sorted(answers))
    finally:
        cl.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    return res


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def run_latency(args, directory):
    root = tempfile.mkdtemp(prefix="ra-bench-dir-")
    cl = Cluster(root, directory)
    cl.start()
    res = {"run": "latency-" + ("directory" if directory else "pubsub")}

    async def run():
        pool = Pool(FRONTS[0])
        await pool.get("/?room=warm")
        first, known = [], []
        for i in range(args.lat):
            t = time.perf_counter()
            await pool.get("/?room=l%d" % i)
            first.append(time.perf_counter() - t)
        calls = dir_sum("calls") if directory else 0
        for i in range(args.lat):
            t = time.perf_counter()
            await pool.get("/?room=l%d" % i)
            known.append(time.perf_counter() - t)
        return first, known, calls

    try:
        first, known, calls = asyncio.run(run())
        for n, v in (("first", first), ("known", known)):
            res[n + "_p50_us"] = round(pct(v, 0.5) * 1e6)
            res[n + "_p99_us"] = round(pct(v, 0.99) * 1e6)
        if directory:
            res["known_room_calls"] = dir_sum("calls") - calls
            st = status(FRONTS[0])["upstreams"]["chat"]["directory"]
            res["rtt_avg_us"] = st["rtt_us"]["avg"]
            res["rtt_max_us"] = st["rtt_us"]["max"]
            # the histogram's bucket that holds the 99th percentile
            le = st["rtt_us"]["le"]
            n = st["rtt_us"]["count"]
            for k, v in le.items():
                if v >= 0.99 * n:
                    res["rtt_p99_le_us"] = k
                    break
    finally:
        cl.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(root, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rooms", type=int, default=10000)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--spread", type=float, default=50)
    ap.add_argument("--outage", type=float, default=1000)
    ap.add_argument("--lat", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", default="pubsub directory restart latency")
    args = ap.parse_args()

    if not os.path.exists(SO):
        sys.exit("build the module first (make module)")

    out = []
    runs = args.runs.split()
    if "pubsub" in runs:
        out.append(run_load(args, "pubsub", False))
        print(json.dumps(out[-1]), flush=True)
    if "directory" in runs:
        out.append(run_load(args, "directory", True))
        print(json.dumps(out[-1]), flush=True)
    if "restart" in runs:
        out.append(run_load(args, "restart", True, outage=True))
        print(json.dumps(out[-1]), flush=True)
    if "latency" in runs:
        out.append(run_latency(args, False))
        print(json.dumps(out[-1]), flush=True)
        out.append(run_latency(args, True))
        print(json.dumps(out[-1]), flush=True)


if __name__ == "__main__":
    main()
