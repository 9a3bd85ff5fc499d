// A worker thread holding a share of the receivers. It opens them, then counts, per step, what
// each receiver gets: unique messages (a bitmap per receiver), duplicates, deliveries inside
// the measurement window, and the latency of every message sent inside the window.
// The main thread drives it with messages: step, window_start, window_end, progress, collect,
// close.
"use strict";

const { parentPort, workerData } = require("node:worker_threads");
const { performance } = require("node:perf_hooks");
const { openWithRetry } = require("./clients");
const { nowUs, readMark } = require("./mark");

const { kind, specs, concurrency } = workerData;

let step = -1;
let capacity = 0;
let inWindow = false;
let windowStartUs = Infinity;
let windowCount = 0;
let stale = 0;
let unreadable = 0;
let lat = new Float64Array(1 << 16); // latency µs, of messages sent at or after windowStartUs
let sentAt = new Float64Array(1 << 16);
let nLat = 0;
let elu0 = null; // event loop utilisation at the window's start
let eluWindow = null; // ... over the window: near 1 means this thread was the bottleneck

function push(l, t) {
  if (nLat === lat.length) {
    const grow = (a) => { const b = new Float64Array(a.length * 2); b.set(a); return b; };
    lat = grow(lat);
    sentAt = grow(sentAt);
  }
  lat[nLat] = l;
  sentAt[nLat] = t;
  nLat++;
}

class Receiver {
  constructor() {
    this.got = new Uint8Array(0);
    this.unique = 0;
    this.dups = 0;
  }

  reset(cap) {
    this.got = new Uint8Array(cap);
    this.unique = 0;
    this.dups = 0;
  }
}

const receivers = specs.map(() => new Receiver());
const mark = [0, 0, 0];

function onDelivery(r, data) {
  const now = nowUs();
  if (!readMark(data, mark)) { unreadable++; return; }
  // every delivery inside the window counts for the rate (and the server's CPU per delivery),
  // a straggler of the previous step too: the server did the work in this window
  if (inWindow) windowCount++;
  if (mark[0] !== step) { stale++; return; }
  const seq = mark[1];
  if (seq >= capacity) { unreadable++; return; }
  if (r.got[seq]) { r.dups++; return; }
  r.got[seq] = 1;
  r.unique++;
  if (mark[2] >= windowStartUs) push(now - mark[2], mark[2]);
}

async function openAll() {
  const started = Date.now();
  const handles = new Array(specs.length);
  let next = 0;
  const failures = [];
  async function lane() {
    while (next < specs.length) {
      const i = next++;
      const r = receivers[i];
      try {
        handles[i] = await openWithRetry(kind, specs[i], (data) => onDelivery(r, data));
      } catch (err) {
        failures.push(String(err && err.message ? err.message : err));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, specs.length) }, lane));
  return { handles, failures, seconds: (Date.now() - started) / 1000 };
}

function missing(sent) {
  let n = 0;
  for (const r of receivers) n += sent - r.unique;
  return n;
}

openAll().then(({ handles, failures, seconds }) => {
  parentPort.postMessage({ type: "opened", count: handles.filter(Boolean).length, failures, seconds });
  parentPort.on("message", (m) => {
    switch (m.type) {
      case "step":
        step = m.step;
        capacity = m.capacity;
        for (const r of receivers) r.reset(capacity);
        inWindow = false;
        windowStartUs = Infinity;
        windowCount = 0;
        stale = 0;
        unreadable = 0;
        nLat = 0;
        parentPort.postMessage({ type: "step_ready" });
        break;
      case "window_start":
        windowStartUs = m.t0;
        inWindow = true;
        elu0 = performance.eventLoopUtilization();
        break;
      case "window_end":
        inWindow = false;
        eluWindow = performance.eventLoopUtilization(elu0).utilization;
        break;
      case "progress":
        parentPort.postMessage({ type: "progress", missing: missing(m.sent) });
        break;
      case "collect": {
        // latencies of the messages sent inside the window [t0, t1]
        const out = new Float64Array(nLat);
        let k = 0;
        for (let i = 0; i < nLat; i++) if (sentAt[i] <= m.t1) out[k++] = lat[i];
        const latencies = out.slice(0, k);
        let dups = 0;
        let unique = 0;
        for (const r of receivers) { dups += r.dups; unique += r.unique; }
        parentPort.postMessage({
          type: "collected", windowCount, latencies, dups, unique, missing: missing(m.sent),
          stale, unreadable, elu: eluWindow,
        }, [latencies.buffer]);
        break;
      }
      case "close":
        for (const h of handles) if (h) h.close();
        parentPort.postMessage({ type: "closed" });
        break;
      default:
        break;
    }
  });
});
