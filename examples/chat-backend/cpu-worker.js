'use strict';
/*
 * Samples the machine's CPU usage off the main thread, as the origin design
 * does, and posts the busy percentage of the last interval to the parent.
 */
const os = require('node:os');
const { parentPort, workerData } = require('node:worker_threads');

function times() {
  let idle = 0;
  let total = 0;
  for (const { times: t } of os.cpus()) {
    total += t.user + t.nice + t.sys + t.idle + t.irq;
    idle += t.idle;
  }
  return { idle, total };
}

let prev = times();

function sample() {
  const now = times();
  const total = now.total - prev.total;
  const busy = total - (now.idle - prev.idle);
  prev = now;
  if (total > 0) parentPort.postMessage(Math.round((1000 * busy) / total) / 10);
}

/* a first value soon after start, then one per interval */
setTimeout(sample, Math.min(1000, workerData.intervalMs));
setInterval(sample, workerData.intervalMs);
