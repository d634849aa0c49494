'use strict';
/*
 * A minimal chat backend for ngx_http_room_affinity_module.
 *
 * - HTTP: any request is answered with {"backend": NAME, "path": ...}.
 * - WebSocket: /ws?roomName=X joins room X (kept in this process's memory);
 *   a text message is broadcast to every member of the room.
 * - Load reports: PUBLISH <prefix>register {"url"} once connected to Redis,
 *   PUBLISH <prefix>signaling {"url","connections","cpu",...} every interval,
 *   and HSET <prefix>room_affinity:backends <url> <same JSON> as a snapshot.
 *   With REPORT_ON_LEAVE_MS=M it also reports when clients have left since
 *   its last report, at most once every M ms: nginx counts the join API's
 *   clients as they arrive but cannot see them leave (docs/protocol.md).
 *   On SIGTERM/SIGINT the backend reports draining:true and exits; with
 *   DEREGISTER=1 it also publishes {"url","deregister":true} on register
 *   and removes its snapshot entry (a registered backend leaves at once).
 *
 * Options: --port or PORT, etc. (see `opt` calls below).
 */
const http = require('node:http');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { WebSocketServer } = require('ws');
const { createClient } = require('redis');

/* --some-flag VALUE on the command line, else env SOME_FLAG, else def */
function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  if (i !== -1 && i + 1 < process.argv.length) return process.argv[i + 1];
  const env = process.env[name.toUpperCase().replace(/-/g, '_')];
  return env !== undefined && env !== '' ? env : def;
}

const HOST = opt('host', '127.0.0.1');
const PORT = Number(opt('port', 3001));
const NAME = opt('name', `backend-${PORT}`);
const PUBLIC_URL = opt('public-url', `ws://127.0.0.1:${PORT}`);
const REDIS_URL = opt('redis-url', 'redis://127.0.0.1:6379');
const PREFIX = opt('redis-prefix', '');
const REPORT_MS = Number(opt('report-interval-ms', 2000));
const LEAVE_MS = Number(opt('report-on-leave-ms', 0));     /* 0: off */
const CPU_MS = Number(opt('cpu-interval-ms', 5000));
const CAPACITY = Number(opt('capacity', 0)) || undefined;   /* not sent when unset */
const SNAPSHOT_KEY = `${PREFIX}room_affinity:backends`;
/* on stop, leave nginx's fleet at once (room_affinity ... register=) */
const DEREGISTER = /^(1|on|true|yes)$/i.test(opt('deregister', ''));

const log = (...a) => console.log(`[${NAME}]`, ...a);

/* ---- chat: rooms live in this process only ---- */

const rooms = new Map();            /* room name -> Set of sockets */
let nextId = 1;

const server = http.createServer((req, res) => {
  req.resume();                     /* discard any request body */
  res.writeHead(200, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify({ backend: NAME, path: req.url }) + '\n');
});

const wss = new WebSocketServer({ noServer: true });

server.on('upgrade', (req, socket, head) => {
  const url = new URL(req.url, 'http://localhost');
  const room = url.searchParams.get('roomName');
  if (url.pathname !== '/ws' || !room) {
    socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => join(ws, room));
});

function join(ws, room) {
  const id = `c${nextId++}`;
  if (!rooms.has(room)) rooms.set(room, new Set());
  rooms.get(room).add(ws);
  ws.send(JSON.stringify({ type: 'welcome', backend: NAME, room, id }));

  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    const out = JSON.stringify({
      type: 'message', room, from: id, text: data.toString(), backend: NAME,
    });
    for (const member of rooms.get(room)) member.send(out);
  });
  ws.on('close', () => {
    const members = rooms.get(room);
    members.delete(ws);
    if (members.size === 0) rooms.delete(room);
    left();
  });
  ws.on('error', (err) => log('websocket error:', err.message));
}

/* ---- load: CPU is sampled in a worker thread, as in the origin design ---- */

let cpu;                            /* percent, undefined until sampled */
const sampler = new Worker(path.join(__dirname, 'cpu-worker.js'),
                           { workerData: { intervalMs: CPU_MS } });
sampler.on('message', (pct) => { cpu = pct; });
sampler.unref();

/* ---- Redis: never crash when it is away, just log and retry ---- */

const redis = createClient({
  url: REDIS_URL,
  socket: {
    connectTimeout: 2000,
    /* capped exponential backoff with jitter */
    reconnectStrategy: (n) => Math.min(100 * 2 ** n, 5000) * (0.5 + Math.random() / 2),
  },
  disableOfflineQueue: true,        /* a stale report is worth nothing */
});
redis.on('error', (err) => log('redis:', err.message || err.code, '(retrying)'));
redis.on('ready', () => {
  log(`redis ready, registering ${PUBLIC_URL}`);
  redis.publish(`${PREFIX}register`, JSON.stringify({ url: PUBLIC_URL }))
    .catch((err) => log('register failed:', err.message));
  report(false);
});

let closedSince = 0;                /* clients gone since the last report */
let lastReportAt = 0;
let leaveTimer = null;

function report(draining) {
  if (!redis.isReady) return Promise.resolve();
  closedSince = 0;
  lastReportAt = Date.now();
  const msg = JSON.stringify({
    url: PUBLIC_URL, connections: wss.clients.size, cpu, capacity: CAPACITY, draining,
  });                               /* JSON.stringify drops undefined fields */
  return Promise.all([
    redis.publish(`${PREFIX}signaling`, msg),
    redis.hSet(SNAPSHOT_KEY, PUBLIC_URL, msg),
  ]).catch((err) => log('report failed:', err.message));
}

const timer = setInterval(() => report(false), REPORT_MS);

/*
 * Arrivals need no report of their own (nginx counted the join it
 * answered); a departure does.  Counting closes rather than comparing the
 * count with the last report's: arrivals since may hide them.  A room that
 * ends closes all its members at once: the wait makes them one report.
 */
function left() {
  closedSince++;
  if (LEAVE_MS <= 0 || leaveTimer !== null || stopping) return;
  const wait = Math.max(0, lastReportAt + LEAVE_MS - Date.now());
  leaveTimer = setTimeout(() => {
    leaveTimer = null;
    if (closedSince > 0 && !stopping) report(false);
  }, wait);
}

/* ---- graceful stop: tell nginx first, then close the rooms ---- */

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  log(`${signal}: draining`);
  clearInterval(timer);
  if (leaveTimer !== null) clearTimeout(leaveTimer);
  setTimeout(() => process.exit(0), 3000).unref();  /* hard limit */
  await report(true);
  if (DEREGISTER && redis.isReady) {
    /* a registered backend leaves; its snapshot entry must not bring it back */
    await Promise.all([
      redis.publish(`${PREFIX}register`, JSON.stringify({ url: PUBLIC_URL, deregister: true })),
      redis.hDel(SNAPSHOT_KEY, PUBLIC_URL),
    ]).catch((err) => log('deregister failed:', err.message));
  }
  server.close();
  for (const ws of wss.clients) ws.close(1001, 'backend going away');
  await redis.quit().catch(() => {});
  await sampler.terminate();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

server.listen(PORT, HOST, () => log(`listening on ${HOST}:${PORT} as ${PUBLIC_URL}`));
redis.connect().catch((err) => log('redis connect failed:', err.message));
