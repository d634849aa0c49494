'use strict';
/*
 * Many chat clients in many rooms through nginx; checks room affinity.
 *
 *   node swarm.js --nginx http://127.0.0.1:8080 --rooms 12 --clients 60 --messages 3
 *
 * Client i joins room i % rooms.  Each round: wait until every client is
 * welcomed, each client sends --messages texts, then every member of a room
 * must receive every message of its room.  Prints room -> backend (from the
 * welcome) -> members -> messages delivered; exits 1 on any loss or when a
 * room's members landed on different backends.
 *
 * Backend failover: with --rounds 2 --hold 5000 --reconnect, clients stay
 * connected for 5 s after round 1 (kill a backend then); a client whose
 * connection closes reconnects, and round 2 checks the rooms again,
 * showing where they moved.
 */
const { parseArgs } = require('node:util');
const { WebSocket } = require('ws');

const usage = `usage: node swarm.js [options]
  --nginx URL[,URL...]  base URL (default: http://127.0.0.1:8080); clients are
                        spread round robin over a list (shows the problem
                        that nginx solves)
  --path PATH           WebSocket path (default: /ws); room goes in ?roomName=
  --rooms N             rooms (default: 12)
  --clients N           clients in all (default: 60)
  --messages N          messages each client sends per round (default: 3)
  --room-prefix TEXT    room names are TEXT-1, TEXT-2, ... (default: room)
  --rounds N            rounds of messages (default: 1)
  --hold MS             stay connected MS between rounds (default: 0);
                        SIGUSR1 ends the wait early
  --reconnect           reconnect a client whose connection closed
  --timeout MS          limit for connecting and for delivery (default: 10000)
  --json                print a JSON report instead of the table`;

let o;
try {
  o = parseArgs({
    options: {
      nginx: { type: 'string', default: 'http://127.0.0.1:8080' },
      path: { type: 'string', default: '/ws' },
      rooms: { type: 'string', default: '12' },
      clients: { type: 'string', default: '60' },
      messages: { type: 'string', default: '3' },
      'room-prefix': { type: 'string', default: 'room' },
      rounds: { type: 'string', default: '1' },
      hold: { type: 'string', default: '0' },
      reconnect: { type: 'boolean', default: false },
      timeout: { type: 'string', default: '10000' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (err) {
  console.error(`${err.message}\n${usage}`);
  process.exit(2);
}
if (o.help) {
  console.log(usage);
  process.exit(0);
}

const ROOMS = Number(o.rooms);
const CLIENTS = Number(o.clients);
const MESSAGES = Number(o.messages);
const TIMEOUT = Number(o.timeout);
const targets = o.nginx.split(',').map((u) => u.replace(/^http/, 'ws') + o.path);
const note = (text) => console.error(`# ${text}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let round = 0;
let stopping = false;
let wake = () => {};
process.on('SIGUSR1', () => wake());       /* ends a --hold early */

/* ---- one client: a socket that may be replaced on reconnect ---- */

function makeClient(index) {
  const room = `${o['room-prefix']}-${(index % ROOMS) + 1}`;
  const url = `${targets[index % targets.length]}?roomName=${encodeURIComponent(room)}`;
  const c = { index, room, url, ws: null, backend: null, ready: false,
              got: new Set(), failures: 0, errors: [] };

  c.connect = () => {
    const ws = new WebSocket(url);
    c.ws = ws;
    c.ready = false;
    ws.on('message', (data) => {
      const msg = JSON.parse(data.toString());
      if (msg.type === 'welcome') {
        c.backend = msg.backend;
        c.ready = true;
        c.failures = 0;
      } else if (msg.type === 'message' && msg.text.startsWith(`r${round}|`)) {
        c.got.add(msg.text);                /* a Set: duplicates count once */
      }
    });
    ws.on('error', (err) => c.errors.push(err.message));
    ws.on('close', () => {
      if (stopping || c.ws !== ws) return;
      c.ready = false;
      if (!o.reconnect) {
        c.errors.push('connection closed');
        return;
      }
      const ms = Math.min(100 * 2 ** c.failures++, 2000) * (0.5 + Math.random() / 2);
      setTimeout(c.connect, ms);
    });
  };
  return c;
}

async function until(cond, what) {
  const deadline = Date.now() + TIMEOUT;
  while (!cond()) {
    if (Date.now() > deadline) {
      note(`timeout waiting for ${what}`);
      return false;
    }
    await sleep(20);
  }
  return true;
}

/* ---- a round: everyone welcomed, everyone sends, everyone receives ---- */

async function runRound(clients, previous) {
  round++;
  for (const c of clients) c.got.clear();
  await until(() => clients.every((c) => c.ready), 'every client to be welcomed');

  const byRoom = new Map();
  for (const c of clients) {
    if (!byRoom.has(c.room)) byRoom.set(c.room, []);
    byRoom.get(c.room).push(c);
  }
  for (const c of clients) {
    for (let k = 1; k <= MESSAGES; k++) {
      if (c.ready) c.ws.send(`r${round}|${c.index}|${k}`);
    }
  }
  const want = (c) => byRoom.get(c.room).length * MESSAGES;
  await until(() => clients.every((c) => c.got.size >= want(c)), 'every message');

  const rooms = [];
  for (const [room, members] of byRoom) {
    const backends = [...new Set(members.map((c) => (c.ready ? c.backend : '?')))].sort();
    const delivered = members.reduce((n, c) => n + c.got.size, 0);
    const expected = members.length * members.length * MESSAGES;
    rooms.push({
      round, room, backends, members: members.length, delivered, expected,
      was: previous.get(room) || null,
      ok: backends.length === 1 && backends[0] !== '?' && delivered === expected,
    });
    previous.set(room, backends.join(','));
  }
  return rooms;
}

function printTable(rooms) {
  const rows = [['round', 'room', 'backend', 'members', 'delivered', '']];
  for (const r of rooms) {
    const moved = r.was && r.was !== r.backends.join(',') ? ` (was ${r.was})` : '';
    rows.push([r.round, r.room, r.backends.join(',') + moved, r.members,
               `${r.delivered}/${r.expected}`,
               r.ok ? 'ok' : r.backends.length > 1 ? 'SPLIT' : 'LOSS']);
  }
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) {
    console.log(r.map((v, i) => String(v).padEnd(width[i])).join('  ').trimEnd());
  }
}

async function main() {
  const clients = Array.from({ length: CLIENTS }, (_, i) => makeClient(i));
  const previous = new Map();
  const results = [];

  clients.forEach((c) => c.connect());
  for (let r = 1; r <= Number(o.rounds); r++) {
    if (r > 1 && Number(o.hold) > 0) {
      note(`round ${r - 1} done, holding ${o.hold} ms`);
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, Number(o.hold));
      });
    }
    results.push(...(await runRound(clients, previous)));
  }
  stopping = true;
  clients.forEach((c) => c.ws.terminate());

  const failed = results.filter((r) => !r.ok);
  const errors = [...new Set(clients.flatMap((c) => c.errors))];
  if (o.json) {
    console.log(JSON.stringify({ ok: failed.length === 0, errors, rooms: results }, null, 1));
  } else {
    printTable(results);
    const sum = (k) => results.reduce((n, r) => n + r[k], 0);
    console.log(`${results.length} room rounds, ${failed.length} failed, ` +
                `${sum('delivered')}/${sum('expected')} messages delivered`);
    if (errors.length) console.log(`connection errors seen: ${errors.slice(0, 5).join('; ')}`);
  }
  process.exit(failed.length === 0 ? 0 : 1);
}

main();
