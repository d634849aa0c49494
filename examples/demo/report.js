'use strict';
/*
 * Tables and checks for the demo (examples/demo/demo.sh).
 *
 *   node report.js status URL|FILE [ADDR=NAME,...]
 *                                               nginx's backend table, from
 *                                               room_affinity_status JSON
 *   node report.js rooms FILE [--round N] [--before FILE] [--victim NAME]
 *                                               the rooms of a swarm.js
 *                                               --json report; exit 1 if a
 *                                               room is split, lost messages,
 *                                               or moved when it should not
 *   node report.js busiest FILE                 the backend with most rooms
 *   node report.js wait URL N SECONDS           until nginx is subscribed to
 *                                               Redis and N backends reported
 *   node report.js settled URL N SECONDS        until the reports of the
 *                                               backends that are up add up
 *                                               to N connections
 *   node report.js reconnected URL ADDR N SECONDS
 *                                               until nginx holds N live
 *                                               connections, none to ADDR
 */
const fs = require('node:fs');

const [cmd, ...args] = process.argv.slice(2);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function table(rows) {
  const width = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  for (const r of rows) {
    console.log(r.map((v, i) => String(v).padEnd(width[i])).join('  ').trimEnd());
  }
}

async function getStatus(url) {
  if (!/^https?:/.test(url)) return JSON.parse(fs.readFileSync(url, 'utf8'));
  const res = await fetch(url);
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
  return res.json();
}

function option(name, def) {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1];
}

/* ---- status: one line per backend of every room_affinity upstream ---- */

async function status(url, names) {
  const name = new Map((names || '').split(',').filter(Boolean)
    .map((kv) => kv.split('=')));
  const st = await getStatus(url);
  for (const [upstream, u] of Object.entries(st.upstreams)) {
    const rows = [['backend', 'server', 'state', 'capacity', 'reported', 'load',
                   'live', 'rooms', 'placed', 'report age']];
    for (const b of u.backends) {
      const r = b.report || {};
      const load = r.capacity && r.connections !== undefined
        ? `${Math.round((100 * r.connections) / r.capacity)}%` : '-';
      rows.push([name.get(b.server) || '-', b.server, b.state, r.capacity ?? '-',
                 r.connections ?? '-', load, b.live, b.rooms, b.placed,
                 r.age_ms !== undefined ? `${(r.age_ms / 1000).toFixed(1)} s` : '-']);
    }
    console.log(`upstream ${upstream}:`);
    table(rows);
    const z = u.zone;
    console.log(`zone ${z.name}: ${z.rooms} rooms, ${Math.ceil(z.bytes_used / 1024)} of ` +
                `${Math.round(z.bytes_total / 1024)} KiB used; ${z.moved} moved, ` +
                `${z.expired} expired, ${z.evicted} evicted`);
  }
  const rd = st.redis;
  if (rd) {
    console.log(`redis ${rd.address}: ${rd.connected ? 'subscribed' : 'NOT CONNECTED'}` +
                ` (worker pid ${rd.subscriber_pid}), ${rd.messages.applied} reports applied,` +
                ` ${rd.messages.rejected} rejected`);
  }
  console.log('(capacity, reported: from the backend\'s last report through Redis;' +
              ' live: WebSockets through this nginx; rooms: pinned to the backend)');
}

/* ---- rooms: the swarm's table, with the checks the demo makes ---- */

function rooms(file) {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  const round = Number(option('round', 0)) ||
                Math.max(...report.rooms.map((r) => r.round));
  const victim = option('victim', null);
  const beforeFile = option('before', null);
  const mine = report.rooms.filter((r) => r.round === round);
  const prev = new Map();
  let ok = true;

  /* where each room was: the earlier round of this run, or another run */
  for (const r of report.rooms.filter((x) => x.round === round - 1)) {
    prev.set(r.room, r.backends.join(','));
  }
  if (beforeFile) {
    const before = JSON.parse(fs.readFileSync(beforeFile, 'utf8'));
    const first = new Map(before.rooms.map((r) => [r.room, r.backends.join(',')]));
    const back = report.rooms.filter((r) => r.round === 1);
    const same = back.filter((r) => r.backends.join(',') === first.get(r.room));
    console.log(`back after reconnecting: ${same.length} of ${back.length} rooms on ` +
                'the same backend as before');
    if (same.length !== back.length) ok = false;
    console.log('');
  }

  const rows = [['room', 'backend', 'members', 'delivered', '']];
  let moved = 0;
  for (const r of mine) {
    const now = r.backends.join(',');
    const was = prev.get(r.room);
    let verdict = r.ok ? 'ok' : r.backends.length > 1 ? 'SPLIT' : 'LOSS';
    if (was && was !== now) {
      moved++;
      if (victim && was !== victim) {
        verdict = 'MOVED though its backend lives';
        ok = false;
      }
    }
    if (victim && now.split(',').includes(victim)) {
      verdict = 'STILL ON THE KILLED BACKEND';
      ok = false;
    }
    if (!r.ok) ok = false;
    rows.push([r.room, was && was !== now ? `${now}  (was ${was})` : now,
               r.members, `${r.delivered}/${r.expected}`, verdict]);
  }
  table(rows);

  const sum = (k) => mine.reduce((n, r) => n + r[k], 0);
  const used = new Set(mine.flatMap((r) => r.backends));
  console.log('');
  console.log(`${mine.length} rooms on ${used.size} backends, ${sum('members')} clients, ` +
              `${sum('delivered')}/${sum('expected')} messages delivered, ` +
              `${mine.filter((r) => r.ok).length} rooms whole on one backend`);
  if (victim) {
    console.log(`${moved} rooms moved from ${victim}, each as a whole to one backend; ` +
                `${mine.length - moved} rooms stayed where they were`);
  }
  if (report.errors.length) {
    console.log(`(clients saw: ${report.errors.slice(0, 3).join('; ')})`);
  }
  process.exit(ok ? 0 : 1);
}

function busiest(file) {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  const count = new Map();
  for (const r of report.rooms) {
    for (const b of r.backends) count.set(b, (count.get(b) || 0) + 1);
  }
  const sorted = [...count].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  console.log(sorted[0][0]);
}

/* ---- polling ---- */

async function until(seconds, cond) {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    try {
      if (cond(await getStatus(args[0]))) return;
    } catch (err) {
      /* not up yet */
    }
    if (Date.now() > deadline) process.exit(1);
    await sleep(100);
  }
}

async function main() {
  switch (cmd) {
    case 'status':
      return status(args[0], args[1]);
    case 'rooms':
      return rooms(args[0]);
    case 'busiest':
      return busiest(args[0]);
    case 'wait': {
      const n = Number(args[1]);
      return until(Number(args[2]), (st) => st.redis && st.redis.connected &&
        Object.values(st.upstreams).every(
          (u) => u.backends.filter((b) => b.report && b.state === 'up').length >= n));
    }
    case 'settled': {
      const n = Number(args[1]);
      return until(Number(args[2]), (st) => Object.values(st.upstreams).every(
        (u) => u.backends.filter((b) => b.state === 'up')
          .reduce((s, b) => s + ((b.report && b.report.connections) || 0), 0) === n));
    }
    case 'reconnected': {
      const [, addr, n, seconds] = args;
      return until(Number(seconds), (st) => Object.values(st.upstreams).every((u) => {
        const live = u.backends.reduce((s, b) => s + b.live, 0);
        const dead = u.backends.find((b) => b.server === addr);
        return live === Number(n) && (!dead || dead.live === 0);   /* a registered one leaves */
      }));
    }
    default:
      console.error('usage: node report.js status|rooms|busiest|wait|settled|reconnected ...');
      process.exit(2);
  }
}

main().catch((err) => {
  console.error(`report.js: ${err.message}`);
  process.exit(1);
});
