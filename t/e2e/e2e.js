'use strict';
/*
 * End to end, as users run it: nginx (a direct child, daemon off, two
 * workers) with the module, a real redis-server, three Node chat backends
 * (examples/chat-backend) reporting their load through Redis, and real
 * WebSocket clients (examples/ws-client).  Prints TAP; run by t/050-e2e.t.
 *
 * Checks: every room on one backend and every message delivered; a reload
 * (SIGHUP) during live WebSockets keeps every room where it is and the live
 * sockets working; a Redis restart during live traffic loses no message and
 * moves no room; a killed backend's rooms move, each as a whole, to one
 * other backend, and the other rooms stay.  Also runs the Docker image's
 * nginx.conf, rendered by docker/entrypoint.sh, in front of the same stack.
 *
 * Environment (127.0.0.1 ports):
 *   RA_TEST_E2E_PORT        nginx (19870); the backends use the next three,
 *                           the Docker image's config the fourth
 *   RA_TEST_E2E_REDIS_PORT  redis-server (16396)
 *   TEST_NGINX_BINARY       nginx (/usr/sbin/nginx)
 *   TEST_NGINX_LOAD_MODULES the module (build/ngx_http_room_affinity_module.so)
 */
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');
const PORT = Number(process.env.RA_TEST_E2E_PORT || 19870);
const RPORT = Number(process.env.RA_TEST_E2E_REDIS_PORT || 16396);
const NGINX = process.env.TEST_NGINX_BINARY || '/usr/sbin/nginx';
const MODULE = (process.env.TEST_NGINX_LOAD_MODULES || '').split(/\s+/)
  .find((m) => m.includes('room_affinity'))
  || path.join(ROOT, 'build', 'ngx_http_room_affinity_module.so');
const BASE = `http://127.0.0.1:${PORT}`;
const PREFIX = 'e2e:';

const BACKENDS = [
  { name: 'b1', port: PORT + 1, capacity: 20 },
  { name: 'b2', port: PORT + 2, capacity: 40 },
  { name: 'b3', port: PORT + 3, capacity: 80 },
];
const byAddr = new Map(BACKENDS.map((b) => [`127.0.0.1:${b.port}`, b]));
const byName = new Map(BACKENDS.map((b) => [b.name, b]));

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/* ---- TAP ---- */

let tests = 0;
let failed = 0;

function diag(text) {
  for (const line of String(text).split('\n')) console.log(`# ${line}`);
}

function ok(cond, name, detail) {
  tests++;
  console.log(`${cond ? 'ok' : 'not ok'} ${tests} - ${name}`);
  if (!cond) {
    failed++;
    if (detail !== undefined) {
      diag(typeof detail === 'string' ? detail : JSON.stringify(detail, null, 1));
    }
  }
  return cond;
}

function is(got, want, name) {
  return ok(JSON.stringify(got) === JSON.stringify(want), name,
            `got:      ${JSON.stringify(got)}\nexpected: ${JSON.stringify(want)}`);
}

/* ---- processes: every one is our child, stopped and reaped at the end ---- */

const TMP = fs.mkdtempSync(path.join(process.env.TMPDIR || os.tmpdir(), 'ra-e2e.'));
const children = new Set();

function start(name, cmd, args, env) {
  const log = fs.openSync(path.join(TMP, `${name}.log`), 'a');
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env }, stdio: ['ignore', log, log],
  });
  fs.closeSync(log);
  child.label = name;
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  children.add(child);
  return child;
}

async function stop(child, signal = 'SIGTERM', ms = 5000) {
  if (!children.has(child)) return child.exited;
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), ms);
  const r = await child.exited;
  clearTimeout(t);
  return r;
}

async function stopAll() {
  await Promise.all([...children].map((c) => stop(c)));
}

function logOf(name) {
  try {
    return fs.readFileSync(path.join(TMP, `${name}.log`), 'utf8');
  } catch {
    return '';
  }
}

async function until(ms, cond) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const v = await cond();
      if (v) return v;
    } catch {
      /* not yet */
    }
    if (Date.now() > deadline) return false;
    await sleep(50);
  }
}

function redisPing(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    s.setTimeout(1000, () => { s.destroy(); resolve(false); });
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      data += d;
      if (data.includes('\r\n')) { s.destroy(); resolve(data.startsWith('+PONG')); }
    });
    s.on('error', () => resolve(false));
  });
}

function portFree(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => { s.destroy(); resolve(false); });
    s.on('error', () => resolve(true));
  });
}

/* ---- the stack ---- */

let redis;
let nginx;
const backend = new Map();          /* name -> child */

async function startRedis() {
  redis = start('redis', 'redis-server', ['--port', String(RPORT), '--bind', '127.0.0.1',
                                          '--save', '', '--appendonly', 'no']);
  return until(5000, () => redisPing(RPORT));
}

async function startBackend(b) {
  const child = start(b.name, 'node', [path.join(EXAMPLES, 'chat-backend', 'server.js')], {
    NAME: b.name, PORT: String(b.port), CAPACITY: String(b.capacity),
    REDIS_URL: `redis://127.0.0.1:${RPORT}`, REDIS_PREFIX: PREFIX,
    REPORT_INTERVAL_MS: '300', CPU_INTERVAL_MS: '500',
  });
  backend.set(b.name, child);
  return until(10000, async () => (await fetch(`http://127.0.0.1:${b.port}/`)).ok);
}

function nginxConf() {
  /* a copy: a rebuild (make) rewrites build/*.so in place, which crashes
     the running workers that have it mapped */
  const module = path.join(TMP, path.basename(MODULE));
  fs.copyFileSync(MODULE, module);
  const servers = BACKENDS.map((b) => `        server 127.0.0.1:${b.port};`).join('\n');
  return `load_module ${module};
daemon off;
master_process on;
worker_processes 2;
error_log ${TMP}/nginx/error.log info;
pid ${TMP}/nginx/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path ${TMP}/nginx;
    proxy_temp_path ${TMP}/nginx;
    room_affinity_redis 127.0.0.1:${RPORT} prefix=${PREFIX} backoff=500ms;
    upstream chat {
        room_affinity $arg_roomName zone=e2e_rooms:1m;
        zone e2e_peers 64k;
${servers}
    }
    server {
        listen 127.0.0.1:${PORT};
        location /ws {
            proxy_pass http://chat;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_read_timeout 1h;
        }
        location = /status { room_affinity_status; }
        location / { proxy_pass http://chat; }
    }
}
`;
}

async function startNginx() {
  fs.mkdirSync(path.join(TMP, 'nginx'), { recursive: true });
  fs.writeFileSync(path.join(TMP, 'nginx', 'nginx.conf'), nginxConf());
  nginx = start('nginx.out', NGINX, ['-p', `${TMP}/nginx`, '-c', `${TMP}/nginx/nginx.conf`,
                                     '-e', `${TMP}/nginx/error.log`]);
  return until(10000, async () => (await fetch(`${BASE}/status`)).ok);
}

async function status(query = '') {
  const res = await fetch(`${BASE}/status${query}`);
  return res.json();
}

function backends(st) {
  return st.upstreams.chat.backends;
}

async function roomBackend(room) {
  const st = await status(`?room=${encodeURIComponent(room)}`);
  const b = byAddr.get(st.backend);
  return b ? b.name : `?${st.backend || st.error}`;
}

/* pids of the processes whose parent is pid (nginx's workers) */
function childPids(pid) {
  const pids = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) pids.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return pids.sort((a, b) => a - b);
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/* ---- clients ---- */

/* swarm.js in the background: await .done for {code, report, stderr} */
function swarm(args) {
  const child = spawn('node', [path.join(EXAMPLES, 'ws-client', 'swarm.js'),
                               '--nginx', BASE, '--json', ...args],
                      { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => { out += d; });
  child.stderr.on('data', (d) => { err += d; });
  children.add(child);
  child.done = new Promise((resolve) => {
    child.on('close', (code, signal) => {
      children.delete(child);
      let report = null;
      try {
        report = JSON.parse(out);
      } catch {
        /* none */
      }
      resolve({ code, signal, report, stderr: err });
    });
  });
  child.exited = child.done;
  child.err = () => err;
  /* resolves true once it holds after round n, false if it ended */
  child.held = (n) => until(20000, () => err.includes(`round ${n} done`)
                                          || (child.exitCode !== null && 'ended'))
    .then((v) => v === true);
  return child;
}

/* one client.js: joins the room, sends "text", waits for its echo */
function client(room, text) {
  return new Promise((resolve) => {
    const url = `ws://127.0.0.1:${PORT}/ws?roomName=${encodeURIComponent(room)}`;
    const child = spawn('node', [path.join(EXAMPLES, 'ws-client', 'client.js'),
                                 '--url', url, '--send', text, '--expect', '1'],
                        { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.on('close', (code) => {
      const lines = out.split('\n').map((l) => {
        try {
          return JSON.parse(l);
        } catch {
          return {};
        }
      });
      const welcome = lines.find((m) => m.type === 'welcome');
      const echo = lines.find((m) => m.type === 'message' && m.text === text);
      resolve({ code, backend: welcome && welcome.backend, echoed: Boolean(echo) });
    });
  });
}

function roomsOf(report, round) {
  return new Map(report.rooms.filter((r) => r.round === round)
    .map((r) => [r.room, r]));
}

function checkRounds(res, rounds, what) {
  ok(res.code === 0 && res.report && res.report.ok,
     `${what}: every room whole on one backend, every message delivered`,
     res.report ? res.report.rooms.filter((r) => !r.ok) : res.stderr);
  if (!res.report) return;
  is(res.report.rooms.length, 12 * rounds, `${what}: 12 rooms checked in each of ${rounds} rounds`);
  is(res.report.errors, [], `${what}: no client saw an error or a closed connection`);
  const moved = res.report.rooms.filter((r) => r.was && r.was !== r.backends.join(','));
  is(moved.map((r) => `${r.round}:${r.room}:${r.was}->${r.backends}`), [],
     `${what}: no room changed backend from one round to the next`);
}

/* ---- the scenario ---- */

async function setup() {
  for (const [what, bin] of [['node', 'node'], ['redis-server', 'redis-server'],
                             ['nginx', NGINX]]) {
    if (spawnSync('sh', ['-c', `command -v ${bin}`]).status !== 0) {
      console.log(`1..0 # SKIP ${what} not installed`);
      return false;
    }
  }
  if (!fs.existsSync(MODULE)) {
    console.log(`1..0 # SKIP ${MODULE} not built (make)`);
    return false;
  }
  if (!fs.existsSync(path.join(EXAMPLES, 'node_modules', 'ws'))
      || !fs.existsSync(path.join(EXAMPLES, 'node_modules', 'redis'))) {
    const r = spawnSync('npm', ['ci', '--prefix', EXAMPLES, '--no-audit', '--no-fund'],
                        { encoding: 'utf8' });
    if (r.status !== 0) {
      console.log('1..0 # SKIP npm ci in examples failed');
      return false;
    }
  }
  for (const p of [PORT, RPORT, ...BACKENDS.map((b) => b.port)]) {
    if (!(await portFree(p))) {
      console.log(`Bail out! port ${p} is in use (RA_TEST_E2E_PORT, RA_TEST_E2E_REDIS_PORT)`);
      return false;
    }
  }

  ok(await startRedis(), `redis-server on 127.0.0.1:${RPORT}`, logOf('redis'));
  for (const b of BACKENDS) {
    ok(await startBackend(b), `chat backend ${b.name} on ${b.port}, capacity ${b.capacity}`,
       logOf(b.name));
  }
  if (!ok(await startNginx(), `nginx with the module on ${PORT}`,
          logOf('nginx.out') + fs.readFileSync(`${TMP}/nginx/error.log`, 'utf8'))) {
    return false;
  }
  const ready = await until(10000, async () => {
    const st = await status();
    return st.redis.connected
      && backends(st).every((b) => b.report && b.report.capacity && b.state === 'up');
  });
  ok(ready, 'nginx subscribed to Redis and has a report, with capacity, from every backend',
     ready || await status());
  return true;
}

async function affinity() {
  const res = await swarm(['--rooms', '12', '--clients', '60', '--messages', '3',
                           '--room-prefix', 'room']).done;
  checkRounds(res, 1, '60 clients in 12 rooms');
  if (!res.report) return;

  const rooms = roomsOf(res.report, 1);
  const used = new Set([...rooms.values()].map((r) => r.backends.join()));
  ok(used.size >= 2, `the rooms are spread over the backends (${[...used].sort()})`);

  const table = [];
  const wrong = [];
  for (const [room, r] of rooms) {
    const b = await roomBackend(room);
    table.push(`${room}->${b}`);
    if (b !== r.backends[0]) wrong.push(`${room}: status ${b}, clients ${r.backends[0]}`);
  }
  is(wrong, [], 'the status page puts every room on the backend its clients reached');

  const http = [];
  for (const room of rooms.keys()) {
    for (let i = 0; i < 3; i++) {
      const res2 = await fetch(`${BASE}/api?roomName=${room}`);
      const body = await res2.json();
      if (body.backend !== rooms.get(room).backends[0]) {
        http.push(`${room}: ${body.backend}`);
      }
    }
  }
  is(http, [], 'plain HTTP requests of every room reach the room\'s backend');
}

async function reload() {
  const s = swarm(['--rooms', '12', '--clients', '60', '--messages', '3',
                   '--room-prefix', 'reload', '--rounds', '2', '--hold', '20000']);
  if (!ok(await s.held(1), 'reload: 60 clients connected in 12 rooms', s.err())) {
    await stop(s);
    return;
  }
  const before = new Map();
  for (let k = 1; k <= 12; k++) before.set(`reload-${k}`, await roomBackend(`reload-${k}`));
  const moved0 = (await status()).upstreams.chat.zone.moved;

  const old = childPids(nginx.pid);
  is(old.length, 2, 'reload: nginx has two workers');
  process.kill(nginx.pid, 'SIGHUP');
  const fresh = await until(10000, () => {
    const now = childPids(nginx.pid).filter((p) => !old.includes(p));
    return now.length === 2 && now;
  });
  ok(fresh, 'reload: SIGHUP started two new workers', childPids(nginx.pid));
  ok(old.every(alive), 'reload: the old workers stay while their WebSockets live');

  /* new connections go through the new workers: same backend as before */
  const joined = await Promise.all([...before.keys()].map((room) => client(room, `hi ${room}`)));
  const wrong = [];
  [...before].forEach(([room, b], i) => {
    if (joined[i].backend !== b || !joined[i].echoed || joined[i].code !== 0) {
      wrong.push(`${room}: was ${b}, new client ${JSON.stringify(joined[i])}`);
    }
  });
  is(wrong, [], 'reload: a new client of every room reaches the room\'s backend');

  const after = [];
  for (const [room, b] of before) {
    const now = await roomBackend(room);
    if (now !== b) after.push(`${room}: ${b} -> ${now}`);
  }
  is(after, [], 'reload: the status page shows every room where it was');

  const subscriber = await until(5000, async () => {
    const st = await status();
    return st.redis.connected && fresh && fresh.includes(st.redis.subscriber_pid)
      && st.redis.subscriber_pid;
  });
  ok(subscriber, 'reload: a new worker subscribes to Redis', (await status()).redis);

  s.kill('SIGUSR1');                         /* round 2 on the old sockets */
  const res = await s.done;
  checkRounds(res, 2, 'reload during live WebSockets');
  is((await status()).upstreams.chat.zone.moved, moved0, 'reload: the zone moved no room');
  ok(await until(10000, () => !old.some(alive)),
     'reload: the old workers exit once their WebSockets are closed', old.filter(alive));
}

async function redisRestart() {
  const s = swarm(['--rooms', '12', '--clients', '60', '--messages', '3',
                   '--room-prefix', 'redis', '--rounds', '4', '--hold', '20000']);
  if (!ok(await s.held(1), 'redis: round 1 with Redis up', s.err())) {
    await stop(s);
    return;
  }
  const connects = (await status()).redis.connects;

  /* killed in the middle of round 2's traffic */
  s.kill('SIGUSR1');
  await stop(redis, 'SIGKILL');
  ok(await until(5000, async () => !(await status()).redis.connected),
     'redis: nginx sees Redis go');
  ok(await s.held(2), 'redis: round 2 while Redis dies');

  /* round 3 with Redis down, new rooms too */
  s.kill('SIGUSR1');
  const newRooms = swarm(['--rooms', '4', '--clients', '12', '--messages', '2',
                          '--room-prefix', 'noredis']);
  ok(await s.held(3), 'redis: round 3 while Redis is down');
  const nr = await newRooms.done;
  ok(nr.code === 0 && nr.report && nr.report.ok,
     'redis: new rooms are placed and work while Redis is down',
     nr.report ? nr.report.rooms.filter((r) => !r.ok) : nr.stderr);

  /* round 4 while nginx and the backends reconnect */
  ok(await startRedis(), 'redis: redis-server started again');
  s.kill('SIGUSR1');
  const res = await s.done;
  checkRounds(res, 4, 'redis restart during live traffic');

  const back = await until(10000, async () => {
    const st = await status();
    return st.redis.connected && st.redis.connects > connects
      && backends(st).every((b) => b.report && b.report.age_ms < 1000);
  });
  ok(back, 'redis: nginx resubscribes and the backends\' reports are fresh again',
     back || (await status()));
}

async function killBackend() {
  const s = swarm(['--rooms', '12', '--clients', '60', '--messages', '3',
                   '--room-prefix', 'fail', '--rounds', '2', '--hold', '20000',
                   '--reconnect']);
  if (!ok(await s.held(1), 'kill: 60 clients connected in 12 rooms', s.err())) {
    await stop(s);
    return;
  }
  const before = new Map();
  for (let k = 1; k <= 12; k++) before.set(`fail-${k}`, await roomBackend(`fail-${k}`));
  const count = new Map();
  for (const b of before.values()) count.set(b, (count.get(b) || 0) + 1);
  const [victim, nrooms] = [...count].sort((a, b) => b[1] - a[1])[0];
  const moved0 = (await status()).upstreams.chat.zone.moved;
  diag(`killing ${victim} (SIGKILL), the backend of ${nrooms} of the 12 rooms`);

  await stop(backend.get(victim), 'SIGKILL');
  const addr = `127.0.0.1:${byName.get(victim).port}`;
  const back = await until(15000, async () => {
    const bs = backends(await status());
    return bs.reduce((n, b) => n + b.live, 0) === 60
      && bs.find((b) => b.server === addr).live === 0;
  });
  ok(back, 'kill: all 60 clients reconnected through nginx, none to the dead backend',
     back || backends(await status()));
  s.kill('SIGUSR1');
  const res = await s.done;

  ok(res.code === 0 && res.report && res.report.ok,
     'kill: after the failover every room is whole on one backend and every message arrives',
     res.report ? res.report.rooms.filter((r) => !r.ok) : res.stderr);
  if (!res.report) return;

  const r1 = roomsOf(res.report, 1);
  const r2 = roomsOf(res.report, 2);
  const bad = [];
  for (const [room, b] of before) {
    if (r1.get(room).backends.join() !== b) bad.push(`${room}: status ${b}, round 1 ${r1.get(room).backends}`);
    const now = r2.get(room).backends;
    if (b === victim) {
      if (now.length !== 1 || now[0] === victim || now[0] === '?') {
        bad.push(`${room}: was on ${victim}, now on ${now}`);
      }
    } else if (now.join() !== b) {
      bad.push(`${room}: was on ${b} (alive), now on ${now}`);
    }
  }
  is(bad, [], `kill: each of ${victim}'s ${nrooms} rooms moved whole to one other backend, the others stayed`);

  const statusBad = [];
  for (const [room] of before) {
    const b = await roomBackend(room);
    if (b !== r2.get(room).backends[0]) statusBad.push(`${room}: ${b}`);
  }
  is(statusBad, [], 'kill: the status page agrees with the clients');
  is((await status()).upstreams.chat.zone.moved - moved0, nrooms,
     `kill: the zone counts ${nrooms} moved rooms`);
  const dead = backends(await status()).find((b) => b.server === addr);
  is(dead.state, 'down', `kill: the status page shows ${victim} down`);
}

/* the Docker image's config, rendered by its entrypoint, run outside Docker */
async function dockerConfig() {
  if (process.getuid && process.getuid() !== 0) {
    ok(true, '# SKIP docker config: needs root (user www-data, /var/lib/nginx)');
    return;
  }
  const dport = PORT + 4;
  const dir = path.join(TMP, 'docker');
  fs.mkdirSync(dir);
  const module = path.join(dir, path.basename(MODULE));
  fs.copyFileSync(MODULE, module);
  const env = {
    RA_TEMPLATE: path.join(ROOT, 'docker', 'nginx.conf.template'),
    RA_CONF: path.join(dir, 'nginx.conf'),
    RA_MODULE: module,
    RA_PID: path.join(dir, 'nginx.pid'),
    RA_LISTEN: `127.0.0.1:${dport}`,
    RA_WORKERS: '2',
    RA_BACKENDS: BACKENDS.filter((b) => backend.has(b.name) && children.has(backend.get(b.name)))
      .map((b) => `127.0.0.1:${b.port}`).join(', '),
    RA_REDIS: `127.0.0.1:${RPORT}`,
    RA_REDIS_PREFIX: PREFIX,
    RA_OPTIONS: 'ttl=5m',
    RA_ACCESS_LOG: 'off',
  };
  const entry = path.join(ROOT, 'docker', 'entrypoint.sh');
  const t = spawnSync('sh', [entry, NGINX, '-t', '-q', '-e', 'stderr', '-c', env.RA_CONF],
                      { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (!ok(t.status === 0, 'docker: the entrypoint renders a config that nginx -t accepts',
          t.stderr + (fs.existsSync(env.RA_CONF) ? fs.readFileSync(env.RA_CONF, 'utf8') : ''))) {
    return;
  }
  const dn = start('docker-nginx', 'sh', [entry, NGINX, '-e', 'stderr', '-c', env.RA_CONF,
                                          '-g', 'daemon off;'], env);
  const base = `http://127.0.0.1:${dport}`;
  const up = await until(10000, async () => {
    const st = await (await fetch(`${base}/room-affinity/status`)).json();
    return st.redis.connected
      && st.upstreams.room_affinity_backends.backends.every((b) => b.report);
  });
  ok(up, 'docker: nginx runs it, subscribes to Redis, has every backend\'s report',
     logOf('docker-nginx'));
  const child = spawn('node', [path.join(EXAMPLES, 'ws-client', 'swarm.js'), '--nginx', base,
                               '--rooms', '4', '--clients', '12', '--messages', '2', '--json'],
                      { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => { out += d; });
  const code = await new Promise((resolve) => child.on('close', resolve));
  ok(code === 0, 'docker: 12 clients in 4 rooms through it, every room whole, every message', out);
  const prom = await (await fetch(`${base}/room-affinity/status?format=prometheus`)).text();
  ok(/^room_affinity_zone_rooms\{upstream="room_affinity_backends",zone="rooms"\} 4$/m.test(prom),
     'docker: the status location answers Prometheus', prom.slice(0, 500));
  const r = await stop(dn, 'SIGQUIT');
  is(r.code, 0, 'docker: nginx stops gracefully');
}

async function main() {
  const watchdog = setTimeout(async () => {
    console.log('Bail out! the end-to-end test took more than 120 s');
    await stopAll();
    process.exit(1);
  }, 120000);
  const t0 = Date.now();
  let ready = false;
  try {
    ready = await setup();
    if (ready) {
      await affinity();
      await reload();
      await redisRestart();
      await killBackend();
      await dockerConfig();
    }
  } catch (err) {
    ok(false, 'no exception', err.stack);
  } finally {
    await Promise.all([...children].filter((c) => !c.label).map((c) => stop(c)));
    if (nginx && children.has(nginx)) {
      const r = await stop(nginx, 'SIGQUIT', 5000);
      ok(r.code === 0, 'nginx stops gracefully and is reaped', r);
    }
    await stopAll();
    clearTimeout(watchdog);
  }
  if (!ready && tests === 0) {
    fs.rmSync(TMP, { recursive: true, force: true });
    return;
  }
  const log = fs.existsSync(`${TMP}/nginx/error.log`)
    ? fs.readFileSync(`${TMP}/nginx/error.log`, 'utf8') : '';
  const bad = log.split('\n').filter((l) => /\[(alert|crit|emerg)\]|signal \d+ .*exited/.test(l));
  is(bad, [], 'no alert, crit or crashed worker in the error log');
  diag(`took ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`1..${tests}`);
  if (failed === 0) {
    fs.rmSync(TMP, { recursive: true, force: true });
  } else {
    diag(`logs kept in ${TMP}`);
  }
  process.exitCode = failed ? 1 : 0;
}

process.on('uncaughtException', async (err) => {
  ok(false, 'no uncaught exception', err.stack);
  await stopAll();
  console.log(`1..${tests}`);
  diag(`logs kept in ${TMP}`);
  process.exit(1);
});

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    await stopAll();
    process.exit(1);
  });
}

main();
