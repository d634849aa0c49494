'use strict';
/*
 * One WebSocket chat client, for demos and tests.
 *
 *   node client.js --url 'ws://127.0.0.1:8080/ws?roomName=r1' \
 *       --send hello --send again --expect 2
 *
 * Prints every JSON message it receives (the welcome first) on its own line,
 * sends the --send texts once welcomed, and exits 0 once --expect chat
 * messages have arrived (its own echoes count), 1 on timeout, close or error.
 */
const { parseArgs } = require('node:util');
const { WebSocket } = require('ws');

const usage = `usage: node client.js --url URL [options]
  --url URL        ws:// or wss:// URL, e.g. ws://127.0.0.1:8080/ws?roomName=r1
  --send TEXT      text to send once welcomed (repeatable)
  --expect N       exit 0 after N chat messages arrived (default: 0)
  --delay MS       wait MS after the welcome before sending (default: 0)
  --hold MS        stay connected MS longer once done (default: 0)
  --timeout MS     give up after MS (default: 5000)
  -q, --quiet      print nothing but errors`;

let opts;
try {
  opts = parseArgs({
    options: {
      url: { type: 'string' },
      send: { type: 'string', multiple: true, default: [] },
      expect: { type: 'string', default: '0' },
      delay: { type: 'string', default: '0' },
      hold: { type: 'string', default: '0' },
      timeout: { type: 'string', default: '5000' },
      quiet: { type: 'boolean', short: 'q', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  }).values;
} catch (err) {
  console.error(`${err.message}\n${usage}`);
  process.exit(2);
}
if (opts.help || !opts.url) {
  console.error(usage);
  process.exit(opts.help ? 0 : 2);
}

const expect = Number(opts.expect);
const print = (line) => { if (!opts.quiet) console.log(line); };
let received = 0;
let finished = false;

function finish(code, reason) {
  if (finished) return;
  finished = true;
  if (reason) console.error(`client: ${reason}`);
  setTimeout(() => {
    ws.close(1000);
    process.exit(code);
  }, code === 0 ? Number(opts.hold) : 0);
}

const ws = new WebSocket(opts.url);
const timer = setTimeout(() => finish(1, `timeout: ${received}/${expect} messages`),
                         Number(opts.timeout));
timer.unref();

ws.on('message', (data) => {
  print(data.toString());
  let msg;
  try {
    msg = JSON.parse(data.toString());
  } catch {
    return;
  }
  if (msg.type === 'welcome') {
    setTimeout(() => {
      for (const text of opts.send) ws.send(text);
      if (expect === 0) finish(0);
    }, Number(opts.delay));
  } else if (++received >= expect && expect > 0) {
    finish(0);
  }
});
ws.on('unexpected-response', (req, res) => finish(1, `HTTP ${res.statusCode}`));
ws.on('close', (code) => finish(1, `closed by server (${code})`));
ws.on('error', (err) => finish(1, err.message));
