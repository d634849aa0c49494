'use strict';
/*
 * The live benchmark's backends: one Node process serving N WebSocket
 * backends, each on its own port of 127.0.0.1, so that 8 backends cost one
 * process's CPU.
 *
 * Each backend
 *   - accepts WebSocket upgrades on any path whose query names the room
 *     (?roomName=R) and holds the connection until the client closes it;
 *   - PUBLISHes `signaling` {"url","connections","capacity"} every
 *     `period` seconds, the first periodic report at a random offset in
 *     [0, period) so that the backends report out of phase; once at start
 *     it PUBLISHes `register` and a first signaling report (connections 0),
 *     and it keeps its last report in the snapshot hash
 *     `room_affinity:backends`, as examples/chat-backend does;
 *   - with --leave-ms M (0: off, the origin design), also PUBLISHes its
 *     report when clients have left since its last report, at most once
 *     every M ms: a departure signal for the join flow, whose clients
 *     nginx never sees leave (docs/benchmarks.md);
 *   - counts upgrades that came through a proxy (the request carries the
 *     X-Bench-Via header that the bench's nginx and HAProxy set) apart from
 *     direct ones (the join flow and the oracle connect directly).
 *
 * A control server (--ctl PORT) answers
 *   GET /start   start sampling every --sample-ms (0.5 s)
 *   GET /stop    stop sampling
 *   GET /stats   {"samples": [[t_ms, c0, c1, ...], ...], rooms split, ...}
 *
 * Options: --ports P0,P1,... --caps C0,C1,... --redis HOST:PORT
 *          --period SECONDS --seed N --ctl PORT [--sample-ms 500]
 *          [--leave-ms 0]
 */
const http = require('node:http');
const path = require('node:path');

const NM = path.join(__dirname, '..', '..', 'examples', 'node_modules');
const { WebSocketServer } = require(path.join(NM, 'ws'));
const { createClient } = require(path.join(NM, 'redis'));

function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const PORTS = opt('ports', '').split(',').filter(Boolean).map(Number);
const CAPS = opt('caps', '').split(',').filter(Boolean).map(Number);
const REDIS = opt('redis', '127.0.0.1:6379');
const PERIOD_MS = Math.round(Number(opt('period', '5')) * 1000);
const SEED = Number(opt('seed', '1'));
const CTL = Number(opt('ctl', '0'));
const SAMPLE_MS = Number(opt('sample-ms', '500'));
const LEAVE_MS = Number(opt('leave-ms', '0'));

if (PORTS.length === 0 || PORTS.length !== CAPS.length || !CTL) {
  console.error('usage: backends.js --ports P,.. --caps C,.. --ctl PORT ...');
  process.exit(2);
}

/* a small seeded generator (mulberry32) for the report phases */
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = rng(SEED * 7919 + 17);

const N = PORTS.length;
const live = new Array(N).fill(0);          /* open WebSockets per backend */
const upgrades = { proxied: 0, direct: 0, refused: 0 };
const viaCount = {};                        /* X-Bench-Via value -> upgrades */
const reports = new Array(N).fill(0);       /* signaling messages published */
const leaveReports = new Array(N).fill(0);  /* of which on departures */
const closed = new Array(N).fill(0);        /* closes since the last one */
const leaveTimer = new Array(N).fill(null);
const lastReportAt = new Array(N).fill(0);
const reportErrors = { count: 0 };
/* room -> { on: Array(N) live members per backend, ever: Set of backends } */
const rooms = new Map();
const splitInSample = new Set();           /* rooms seen live on 2+ backends */
const samples = [];
let sampling = null;
let t0 = 0;

function url(i) { return `ws://127.0.0.1:${PORTS[i]}`; }

const servers = PORTS.map((port, i) => {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ backend: i, url: url(i), live: live[i] }) + '\n');
  });
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    let room = null;
    try {
      room = new URL(req.url, 'http://x').searchParams.get('roomName');
    } catch (e) { room = null; }
    if (!room) {
      upgrades.refused++;
      socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      return;
    }
    const via = req.headers['x-bench-via'];
    if (via) {
      upgrades.proxied++;
      viaCount[via] = (viaCount[via] || 0) + 1;
    } else {
      upgrades.direct++;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      let r = rooms.get(room);
      if (!r) {
        r = { on: new Array(N).fill(0), ever: new Set() };
        rooms.set(room, r);
      }
      r.on[i]++;
      r.ever.add(i);
      live[i]++;
      ws.on('close', () => { live[i]--; r.on[i]--; closed[i]++; left(i); });
      ws.on('error', () => {});
    });
  });
  server.on('clientError', (err, socket) => socket.destroy());
  server.listen(port, '127.0.0.1');
  return server;
});

/* ---- reports through Redis ---- */

const [rhost, rport] = REDIS.split(':');
const redis = createClient({
  socket: { host: rhost, port: Number(rport), connectTimeout: 2000,
            reconnectStrategy: (n) => Math.min(100 * 2 ** n, 1000) },
  disableOfflineQueue: true,
});
redis.on('error', () => { reportErrors.count++; });

function report(i) {
  if (!redis.isReady) { reportErrors.count++; return Promise.resolve(); }
  const msg = JSON.stringify({ url: url(i), connections: live[i],
                               capacity: CAPS[i] });
  reports[i]++;
  closed[i] = 0;
  lastReportAt[i] = Date.now();
  return Promise.all([
    redis.publish('signaling', msg),
    redis.hSet('room_affinity:backends', url(i), msg),
  ]).catch(() => { reportErrors.count++; });
}

/*
 * --leave-ms: a departure is the one thing a backend knows and nginx does
 * not (in the join flow); arrivals nginx already counts from its join
 * answers, so only a close since the last report is worth a message (not
 * a fall of the count: arrivals since may hide departures).  A
 * room that ends takes all its members at once: the throttle turns their
 * closes into one report.
 */
function left(i) {
  if (LEAVE_MS <= 0 || leaveTimer[i] !== null) return;
  const wait = Math.max(0, lastReportAt[i] + LEAVE_MS - Date.now());
  leaveTimer[i] = setTimeout(() => {
    leaveTimer[i] = null;
    if (closed[i] > 0) { leaveReports[i]++; report(i); }
  }, wait);
}

const timers = [];
redis.on('ready', async () => {
  for (let i = 0; i < N; i++) {
    try {
      await redis.publish('register', JSON.stringify({ url: url(i),
                                                       capacity: CAPS[i] }));
    } catch (e) { reportErrors.count++; }
    await report(i);
  }
  if (timers.length) return;       /* a reconnect: the timers run already */
  for (let i = 0; i < N; i++) {
    const offset = Math.floor(rand() * PERIOD_MS);
    timers.push(setTimeout(() => {
      report(i);
      timers.push(setInterval(() => report(i), PERIOD_MS));
    }, offset));
  }
});
redis.connect().catch(() => { reportErrors.count++; });

/* ---- sampling ---- */

function sample() {
  const t = Date.now() - t0;
  samples.push([t, ...live]);
  for (const [name, r] of rooms) {
    let on = 0;
    for (let i = 0; i < N; i++) if (r.on[i] > 0) on++;
    if (on > 1) splitInSample.add(name);
  }
}

function stats() {
  let everSplit = 0;
  for (const r of rooms.values()) if (r.ever.size > 1) everSplit++;
  return {
    ports: PORTS, caps: CAPS, period_ms: PERIOD_MS, sample_ms: SAMPLE_MS,
    samples, live, rooms: rooms.size,
    split_ever: everSplit, split_in_sample: splitInSample.size,
    upgrades, via: viaCount, reports, report_errors: reportErrors.count,
    leave_ms: LEAVE_MS, leave_reports: leaveReports,
  };
}

const ctl = http.createServer((req, res) => {
  let body = { ok: true };
  if (req.url === '/start') {
    if (!sampling) {
      t0 = Date.now();
      sample();
      sampling = setInterval(sample, SAMPLE_MS);
    }
  } else if (req.url === '/stop') {
    if (sampling) { clearInterval(sampling); sampling = null; sample(); }
  } else if (req.url === '/stats') {
    body = stats();
  } else if (req.url === '/ready') {
    body = { ok: true, redis: redis.isReady, reports };
  } else {
    res.writeHead(404); res.end(); return;
  }
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
});
ctl.listen(CTL, '127.0.0.1');

function quit() {
  for (const t of timers) { clearTimeout(t); clearInterval(t); }
  for (const t of leaveTimer) if (t !== null) clearTimeout(t);
  if (sampling) clearInterval(sampling);
  for (const s of servers) s.close();
  ctl.close();
  redis.disconnect().catch(() => {});
  setTimeout(() => process.exit(0), 200).unref();
}
process.on('SIGTERM', quit);
process.on('SIGINT', quit);
