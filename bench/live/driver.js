'use strict';
/*
 * The live benchmark's clients: replays a schedule (written by run.py from
 * a seed) with real WebSocket clients that hold their upgraded connections
 * until their room ends.
 *
 *   node driver.js --schedule FILE --mode proxy|join|oracle
 *                  --fronts P0,P1 --backends P0,..  --caps C0,..
 *                  [--path /socket] [--deadline-s N]
 *
 * schedule: {"duration_s": D, "rooms": [{"name", "end_s",
 *            "members": [[t_s, front], ...]}, ...]}
 *
 * Modes:
 *   proxy   each member connects to ws://127.0.0.1:FRONT/socket?roomName=R
 *           through the front (nginx or HAProxy) the schedule names;
 *   join    each member POSTs {"roomName": R} to FRONT/signaling/join, then
 *           connects directly to the returned url + /socket?roomName=R;
 *   oracle  the driver places each new room itself on the backend with the
 *           lowest live connections / capacity, counted exactly (every
 *           connection of the cluster is one of its own, counted from the
 *           moment it is opened until it is closed), without knowing the
 *           room's size, and connects directly to it.
 *
 * Prints one JSON line with its counts on stdout when done.
 */
const http = require('node:http');
const path = require('node:path');
const fs = require('node:fs');

const NM = path.join(__dirname, '..', '..', 'examples', 'node_modules');
const WebSocket = require(path.join(NM, 'ws'));

function opt(name, def) {
  const i = process.argv.indexOf(`--${name}`);
  return i !== -1 && i + 1 < process.argv.length ? process.argv[i + 1] : def;
}

const sched = JSON.parse(fs.readFileSync(opt('schedule'), 'utf8'));
const MODE = opt('mode', 'proxy');
const FRONTS = opt('fronts', '').split(',').filter(Boolean).map(Number);
const BACKENDS = opt('backends', '').split(',').filter(Boolean).map(Number);
const CAPS = opt('caps', '').split(',').filter(Boolean).map(Number);
const WSPATH = opt('path', '/socket');
const DEADLINE_MS = Number(opt('deadline-s', String(sched.duration_s + 30)))
                    * 1000;
const OPEN_TIMEOUT_MS = 10000;

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

const counts = {
  mode: MODE, members: 0, opened: 0, failed_upgrades: 0, join_errors: 0,
  closed_early: 0, failure_reasons: {}, join_url_mismatch: 0,
  oracle_rooms: 0, ended_in_flight: 0, after_end: 0,
};
function fail(reason) {
  counts.failed_upgrades++;
  counts.failure_reasons[reason] = (counts.failure_reasons[reason] || 0) + 1;
}

/* oracle state: exact live connections per backend, the rooms it placed */
const oracleLive = new Array(BACKENDS.length).fill(0);
const oracleRoom = new Map();

function oraclePick(room) {
  let b = oracleRoom.get(room);
  if (b !== undefined) return b;
  b = 0;
  for (let i = 1; i < BACKENDS.length; i++) {
    /* lowest load; a tie goes to the larger capacity, then the first */
    const li = oracleLive[i] / CAPS[i];
    const lb = oracleLive[b] / CAPS[b];
    if (li < lb || (li === lb && CAPS[i] > CAPS[b])) b = i;
  }
  oracleRoom.set(room, b);
  counts.oracle_rooms++;
  return b;
}

const sockets = new Map();          /* room -> Set of WebSocket */
/*
 * rooms that have ended: a member due at the very millisecond its room
 * ends (the schedule keeps those, the ends sort first) or whose join
 * answer comes back after the end would otherwise connect and stay until
 * the run ends, an extra load of up to 5 connections that no policy placed
 * (seed 3: 5 members of s3-r156 on one backend for 58 s); bench/sim drops
 * them too
 */
const ended = new Set();
let ending = false;

function connect(room, url, onClose) {
  counts.members++;
  let opened = false;
  let done = false;
  const ws = new WebSocket(url, { perMessageDeflate: false,
                                  handshakeTimeout: OPEN_TIMEOUT_MS });
  let set = sockets.get(room);
  if (!set) { set = new Set(); sockets.set(room, set); }
  set.add(ws);
  const finish = () => {
    if (done) return;
    done = true;
    set.delete(ws);
    if (onClose) onClose();
  };
  ws.on('open', () => { opened = true; counts.opened++; });
  ws.on('unexpected-response', (req, res) => {
    ws._benchFailed = true;
    fail(`http_${res.statusCode}`);
    res.resume();
    ws.terminate();
  });
  ws.on('error', (err) => {
    if (ws._benchFailed) return;     /* counted as unexpected-response */
    /* a socket the driver itself closes (its room ended while the upgrade
       was in flight, or the run ended) is not a failed upgrade */
    if (!opened && !ending && !ws._benchClosing) {
      fail(err.code || err.message || 'error');
    }
  });
  ws.on('close', () => {
    if (opened && !ending && !ws._benchClosing) counts.closed_early++;
    finish();
  });
}

function postJoin(front, room) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ roomName: room });
    const req = http.request({
      host: '127.0.0.1', port: front, path: '/signaling/join',
      method: 'POST', agent, timeout: OPEN_TIMEOUT_MS,
      headers: { 'Content-Type': 'application/json',
                 'Content-Length': Buffer.byteLength(body) },
    }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { data += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) {
          reject(new Error(`join_${res.statusCode}`));
          return;
        }
        try { resolve(JSON.parse(data).url); } catch (e) {
          reject(new Error('join_json'));
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('join_timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

const backendUrls = new Set(BACKENDS.map((p) => `ws://127.0.0.1:${p}`));

function member(room, front) {
  const q = `${WSPATH}?roomName=${encodeURIComponent(room)}`;
  if (ended.has(room)) { counts.after_end++; return; }
  if (MODE === 'proxy') {
    connect(room, `ws://127.0.0.1:${FRONTS[front]}${q}`);
  } else if (MODE === 'oracle') {
    const b = oraclePick(room);
    oracleLive[b]++;
    connect(room, `ws://127.0.0.1:${BACKENDS[b]}${q}`,
            () => { oracleLive[b]--; });
  } else if (MODE === 'join') {
    postJoin(FRONTS[front], room).then((url) => {
      if (ending) return;
      if (ended.has(room)) { counts.after_end++; return; }
      const base = url.replace(/\/+$/, '');
      if (!backendUrls.has(base)) counts.join_url_mismatch++;
      connect(room, `${base}${q}`);
    }, (err) => {
      counts.join_errors++;
      fail(err.message);
    });
  } else {
    throw new Error(`unknown mode ${MODE}`);
  }
}

function endRoom(room) {
  ended.add(room);
  const set = sockets.get(room);
  if (!set) return;
  for (const ws of set) {
    ws._benchClosing = true;
    if (ws.readyState === WebSocket.CONNECTING && !ending) {
      counts.ended_in_flight++;
    }
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    else ws.terminate();
  }
}

/* ---- the schedule as a time-ordered list of events ---- */

const events = [];
for (const r of sched.rooms) {
  for (const [t, front] of r.members) events.push([t * 1000, 0, r.name, front]);
  events.push([r.end_s * 1000, 1, r.name, 0]);
}
/* at equal times, ends first (a slot freed before a new one is taken) */
events.sort((a, b) => a[0] - b[0] || b[1] - a[1]);

const start = Date.now();
let next = 0;
const D = sched.duration_s * 1000;

function tick() {
  const now = Date.now() - start;
  const upto = now >= D ? D - 1e-6 : now;   /* every event before the end */
  while (next < events.length && events[next][0] <= upto) {
    const [, kind, room, front] = events[next++];
    if (kind === 0) member(room, front);
    else endRoom(room);
  }
  if (now >= D || now >= DEADLINE_MS) { finish(); return; }
  setTimeout(tick, Math.min(5, Math.max(1, (events[next] || [D])[0] - now)));
}

let finished = false;
function finish() {
  if (finished) return;
  finished = true;
  ending = true;
  for (const room of sockets.keys()) endRoom(room);
  counts.elapsed_ms = Date.now() - start;
  counts.still_open = 0;
  /* give the closing handshakes a moment, bounded */
  const waitStart = Date.now();
  const wait = () => {
    let open = 0;
    for (const set of sockets.values()) open += set.size;
    if (open === 0 || Date.now() - waitStart > 5000) {
      counts.still_open = open;
      for (const set of sockets.values()) for (const ws of set) ws.terminate();
      process.stdout.write(JSON.stringify(counts) + '\n');
      agent.destroy();
      setTimeout(() => process.exit(0), 50);
      return;
    }
    setTimeout(wait, 50);
  };
  wait();
}

process.on('SIGTERM', finish);
process.on('SIGINT', finish);
tick();
