#!/usr/bin/env node
// The benchmark's load generator. It is driven by bench/compare.py (and bench/legacy_send.py,
// bench/send_fanout.py) and never starts a server itself.
//
//   node loadgen.js CONFIG.json
//
// CONFIG.json holds {"mode": ..., ...}; tokens come in the config (the Python side mints them).
// Output: one JSON object per line on stdout ({"event": ...}); the driver reads the
// window_start / window_end (storm_start / storm_end) lines as they come to read the servers'
// CPU over exactly that window. Diagnostics go to stderr.
//
// Modes
//   probe      a WAMP session joins with a token and deptcast.history answers (node ready);
//              also finds which form of the user topic the node accepts
//   linkprobe  a receiver on one endpoint gets a message sent via another (cluster links up)
//   rates      R receivers, a sender at fixed rates in steps: deliveries/s, latency, loss
//   idle       N connections opened and held until "close" on stdin (memory per connection)
//   storm      N clients connecting at once: time until all are ready
//   echo       one client (legacy socket or WAMP) sending to its own department:
//              latency from its send until it receives the message itself
//   burst      S subscribers, M sends with W calls in flight (closed loop); optionally
//              keyed, in deptcast.send_batch calls of B items, from several senders
//   acks       S subscribers acknowledging receipts (or not), a sender at a fixed rate
"use strict";

const fs = require("node:fs");
const path = require("node:path");
const readline = require("node:readline");
const { Worker } = require("node:worker_threads");
const { performance } = require("node:perf_hooks");
const { openClient, openWithRetry, topicName, WampClient } = require("./clients");
const { nowUs, makeMessage, readMark, quantile } = require("./mark");

function emit(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuPercent(usage, seconds) { return (100 * (usage.user + usage.system)) / 1e6 / seconds; }

function latencySummary(latencies) {
  const sorted = Float64Array.from(latencies).sort();
  const ms = (v) => (v === null ? null : Math.round(v / 10) / 100);
  return {
    samples: sorted.length,
    p50Ms: ms(quantile(sorted, 0.5)),
    p99Ms: ms(quantile(sorted, 0.99)),
    maxMs: ms(sorted.length ? sorted[sorted.length - 1] : null),
  };
}

// ---------------------------------------------------------------- probe, linkprobe

async function probe(cfg) {
  const started = Date.now();
  const deadline = started + cfg.timeout * 1000;
  let lastErr = null;
  while (Date.now() < deadline) {
    const c = new WampClient();
    try {
      await c.connect(cfg.spec);
      await c.call("deptcast.history", [], { limit: 1 });
      let userTopic = null;
      const tried = {};
      for (const template of cfg.userTopics || []) {
        try {
          await c.subscribe(topicName(template, { dept: cfg.spec.dept, user: cfg.spec.authid }));
          userTopic = template;
          break;
        } catch (err) { tried[template] = err.uri || String(err); }
      }
      c.close();
      emit({ event: "probe_ok", seconds: (Date.now() - started) / 1000, userTopic, tried });
      return 0;
    } catch (err) {
      lastErr = err;
      c.close();
      await sleep(250);
    }
  }
  emit({ event: "probe_failed", error: String(lastErr && lastErr.message) });
  return 1;
}

async function linkprobe(cfg) {
  const started = Date.now();
  const deadline = started + cfg.timeout * 1000;
  let got = false;
  const receiver = await openWithRetry(cfg.kind, cfg.receiver, () => { got = true; }, { attempts: 20 });
  const sender = await openWithRetry(cfg.kind, cfg.sender, () => {}, { attempts: 20 });
  sender.useCounters({ ok: 0, errors: {}, outstanding: 0 });
  let sent = 0;
  while (!got && Date.now() < deadline) {
    sender.send(cfg.to, makeMessage(0, sent++));
    for (let i = 0; i < 6 && !got; i++) await sleep(50);
  }
  receiver.close();
  sender.close();
  emit({ event: got ? "linkprobe_ok" : "linkprobe_failed", seconds: (Date.now() - started) / 1000, sent });
  return got ? 0 : 1;
}

// ---------------------------------------------------------------- rates

function startWorkers(cfg) {
  const threads = Math.max(1, Math.min(cfg.threads || 1, cfg.receivers.length));
  const shares = Array.from({ length: threads }, () => []);
  cfg.receivers.forEach((spec, i) => shares[i % threads].push(spec));
  return shares.map((specs) => {
    const w = new Worker(path.join(__dirname, "receivers.js"), {
      workerData: { kind: cfg.kind, specs, concurrency: cfg.concurrency || 50 },
    });
    w.inbox = [];
    w.waiters = [];
    w.on("message", (m) => {
      const waiter = w.waiters.shift();
      if (waiter) waiter(m); else w.inbox.push(m);
    });
    w.on("error", (err) => { console.error("receiver thread failed:", err); process.exit(2); });
    w.next = () => (w.inbox.length ? Promise.resolve(w.inbox.shift()) : new Promise((r) => w.waiters.push(r)));
    return w;
  });
}

async function ask(workers, message) {
  for (const w of workers) w.postMessage(message);
  return Promise.all(workers.map((w) => w.next()));
}

async function rates(cfg) {
  const workers = startWorkers(cfg);
  const opened = await Promise.all(workers.map((w) => w.next()));
  const count = opened.reduce((a, m) => a + m.count, 0);
  const failures = opened.flatMap((m) => m.failures);
  emit({ event: "opened", count, failures: failures.length, firstFailure: failures[0] || null,
         seconds: Math.max(...opened.map((m) => m.seconds)) });
  if (count === 0) return 1;

  const sender = await openWithRetry(cfg.kind, cfg.sender, () => {}, { attempts: 10 });
  const size = cfg.size || 100;
  // with cfg.handshake the driver says "go" on stdin before each step (it may wait for the
  // machine to be quiet first)
  const lines = cfg.handshake ? readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null;
  for (let k = 0; k < cfg.steps.length; k++) {
    const rate = cfg.steps[k];
    if (lines) {
      emit({ event: "step_ready", step: k, rate });
      const { done } = await lines.next();
      if (done) break;
    }
    const total = cfg.warmup + cfg.duration;
    const capacity = Math.ceil(rate * total) + 16;
    await ask(workers, { type: "step", step: k, capacity });
    const counters = { ok: 0, errors: {}, outstanding: 0 };
    sender.useCounters(counters);

    let sent = 0;
    let t0 = null;
    let sentAtT0 = 0;
    let cpu0 = null;
    let elu0 = null;
    const start = nowUs();
    const end = start + total * 1e6;
    for (;;) {
      const now = nowUs();
      if (t0 === null && now >= start + cfg.warmup * 1e6) {
        t0 = nowUs();
        sentAtT0 = sent;
        cpu0 = process.cpuUsage();
        elu0 = performance.eventLoopUtilization();
        for (const w of workers) w.postMessage({ type: "window_start", t0 });
        emit({ event: "window_start", step: k, rate });
      }
      if (now >= end) break;
      const due = Math.min(capacity, Math.floor(((now - start) / 1e6) * rate));
      while (sent < due) sender.send(cfg.to, makeMessage(k, sent++, size));
      await sleep(2);
    }
    const t1 = nowUs();
    const cpu = process.cpuUsage(cpu0);
    const senderElu = performance.eventLoopUtilization(elu0).utilization;
    for (const w of workers) w.postMessage({ type: "window_end" });
    emit({ event: "window_end", step: k, rate });
    const windowSeconds = (t1 - t0) / 1e6;
    const outstandingAtEnd = counters.outstanding;

    // drain: wait until every receiver has every message, or the drain time is over
    const drainStart = Date.now();
    let missing = 0;
    for (;;) {
      const progress = await ask(workers, { type: "progress", sent });
      missing = progress.reduce((a, m) => a + m.missing, 0);
      if (missing === 0 || Date.now() - drainStart > cfg.drain * 1000) break;
      await sleep(200);
    }
    const drainSeconds = (Date.now() - drainStart) / 1000;
    const got = await ask(workers, { type: "collect", sent, t1 });
    const windowCount = got.reduce((a, m) => a + m.windowCount, 0);
    const latencies = new Float64Array(got.reduce((a, m) => a + m.latencies.length, 0));
    let off = 0;
    for (const m of got) { latencies.set(m.latencies, off); off += m.latencies.length; }
    emit({
      event: "step_result", step: k, sendRate: rate, receivers: count,
      offeredDeliveries: rate * count, windowSeconds,
      sentInWindow: sent - sentAtT0, sent,
      delivered: windowCount, deliveredPerSec: windowCount / windowSeconds,
      ...latencySummary(latencies),
      missing: got.reduce((a, m) => a + m.missing, 0), drained: missing === 0, drainSeconds,
      dups: got.reduce((a, m) => a + m.dups, 0),
      stale: got.reduce((a, m) => a + m.stale, 0),
      unreadable: got.reduce((a, m) => a + m.unreadable, 0),
      loadgenCpuPct: cpuPercent(cpu, windowSeconds),
      // the busiest receiver thread's event-loop utilisation in the window (1 = saturated)
      loadgenMaxThreadElu: Math.max(...got.map((m) => m.elu || 0)), senderElu,
      senderOk: counters.ok, senderErrors: counters.errors, senderOutstandingAtEnd: outstandingAtEnd,
    });
  }
  await ask(workers, { type: "close" });
  sender.close();
  await Promise.all(workers.map((w) => w.terminate()));
  return 0;
}

// ---------------------------------------------------------------- idle, storm

async function idle(cfg) {
  const started = Date.now();
  const handles = [];
  const failures = [];
  let next = 0;
  async function lane() {
    while (next < cfg.clients.length) {
      const spec = cfg.clients[next++];
      try {
        handles.push(await openWithRetry(cfg.kind, spec, () => {}));
      } catch (err) {
        failures.push(String(err.message || err));
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency || 50, cfg.clients.length) }, lane));
  emit({ event: "opened", count: handles.length, failures: failures.length, firstFailure: failures[0] || null,
         seconds: (Date.now() - started) / 1000 });
  // hold them until the driver has read the servers' memory
  const rl = readline.createInterface({ input: process.stdin });
  await new Promise((resolve) => {
    rl.on("line", (line) => { if (line.trim() === "close") resolve(); });
    rl.on("close", resolve);
  });
  for (const h of handles) h.close();
  emit({ event: "closed" });
  return 0;
}

async function storm(cfg) {
  const n = cfg.clients.length;
  const readyMs = [];
  const failures = [];
  const handles = [];
  emit({ event: "storm_start", clients: n });
  const cpu0 = process.cpuUsage();
  const t0 = nowUs();
  await Promise.all(cfg.clients.map(async (spec) => {
    try {
      handles.push(await openWithRetry(cfg.kind, spec, () => {}, { attempts: 3, delayMs: 1000 }));
      readyMs.push((nowUs() - t0) / 1000);
    } catch (err) { failures.push(String(err.message || err)); }
  }));
  const seconds = (nowUs() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  emit({ event: "storm_end" });
  readyMs.sort((a, b) => a - b);
  emit({
    event: "storm_result", clients: n, ready: readyMs.length, failures: failures.length,
    firstFailure: failures[0] || null, seconds,
    p50ReadyMs: quantile(readyMs, 0.5), p99ReadyMs: quantile(readyMs, 0.99),
    loadgenCpuSeconds: (cpu.user + cpu.system) / 1e6,
  });
  for (const h of handles) h.close();
  return failures.length ? 1 : 0;
}

// ---------------------------------------------------------------- echo (send latency at light load)

async function echo(cfg) {
  const out = [0, 0, 0];
  const seen = new Set();
  let dups = 0;
  let t0 = Infinity;
  let t1 = Infinity;
  const latencies = [];
  const h = await openWithRetry(cfg.kind || "legacy", cfg.spec, (data) => {
    const now = nowUs();
    if (!readMark(data, out) || out[0] !== 1) return;
    if (seen.has(out[1])) { dups++; return; }
    seen.add(out[1]);
    if (out[2] >= t0 && out[2] <= t1) latencies.push(now - out[2]);
  }, { attempts: 10 });
  const counters = { ok: 0, errors: {}, outstanding: 0 };
  h.useCounters(counters);
  if (cfg.baseline) {
    // the connected socket, idle: what the node spends with nothing sent
    emit({ event: "baseline_start" });
    await sleep(cfg.baseline * 1000);
    emit({ event: "baseline_end" });
  }
  const total = cfg.warmup + cfg.duration;
  const start = nowUs();
  let sent = 0;
  let sentInWindow = 0;
  let cpu0 = null;
  let cpu = null;
  for (;;) {
    const now = nowUs();
    if (cpu0 === null && now >= start + cfg.warmup * 1e6) {
      t0 = nowUs();
      cpu0 = process.cpuUsage();
      emit({ event: "window_start" });
    }
    if (now >= start + total * 1e6) break;
    const due = Math.floor(((now - start) / 1e6) * cfg.rate);
    while (sent < due) {
      h.send(cfg.to, makeMessage(1, sent++, cfg.size || 100));
      if (cpu0 !== null) sentInWindow++;
    }
    await sleep(2);
  }
  t1 = nowUs();
  cpu = process.cpuUsage(cpu0);
  emit({ event: "window_end" });
  const windowSeconds = (t1 - t0) / 1e6;
  const deadline = Date.now() + cfg.drain * 1000;
  while (seen.size < sent && Date.now() < deadline) await sleep(20);
  h.close();
  emit({
    event: "echo_result", sent, sentInWindow, windowSeconds, received: seen.size, missing: sent - seen.size,
    dups, errors: counters.errors, ...latencySummary(latencies), loadgenCpuPct: cpuPercent(cpu, windowSeconds),
  });
  return 0;
}

// ---------------------------------------------------------------- burst (closed loop)

async function burst(cfg) {
  const out = [0, 0, 0];
  let delivered = 0;
  const latencies = [];
  const subs = [];
  for (const spec of cfg.subscribers) {
    subs.push(await openWithRetry("wamp", spec, (data) => {
      const now = nowUs();
      if (readMark(data, out) && out[0] === 2) { delivered++; latencies.push(now - out[2]); }
    }));
  }
  // one sender session per spec (e.g. one per node of a cluster); the lanes take them in turn
  const clients = [];
  for (const spec of cfg.senders || [cfg.sender]) {
    const c = new WampClient();
    await c.connect(spec);
    clients.push(c);
  }
  const expected = cfg.messages * subs.length;
  const batch = cfg.batch || 0;
  const run = `${process.pid}-${Date.now()}`;
  const keyOf = (i) => (cfg.keys ? `${run}-${i}` : undefined);
  emit({ event: "window_start" });
  const cpu0 = process.cpuUsage();
  const t0 = nowUs();
  let next = 0;
  const errors = {};
  const callLatencies = [];
  const count = (uri) => { errors[uri] = (errors[uri] || 0) + 1; };
  async function lane(n) {
    const c = clients[n % clients.length];
    while (next < cfg.messages) {
      const started = nowUs();
      if (batch > 0) {
        const first = next;
        const upto = Math.min(cfg.messages, first + batch);
        next = upto;
        const items = [];
        for (let i = first; i < upto; i++) {
          const item = { to: cfg.to, message: makeMessage(2, i, cfg.size || 100) };
          if (cfg.keys) item.key = keyOf(i);
          items.push(item);
        }
        try {
          const results = await c.call("deptcast.send_batch", [items]);
          for (const r of results || []) if (r && r.error) count(r.error);
        } catch (err) { count(err.uri || String(err)); }
      } else {
        const i = next++;
        const kwargs = cfg.keys ? { key: keyOf(i) } : {};
        try { await c.call("deptcast.send", [cfg.to, makeMessage(2, i, cfg.size || 100)], kwargs); } catch (err) {
          count(err.uri || String(err));
        }
      }
      callLatencies.push(nowUs() - started);
    }
  }
  await Promise.all(Array.from({ length: cfg.window }, (_, n) => lane(n)));
  const tSent = nowUs();
  const deadline = Date.now() + cfg.drain * 1000;
  while (delivered < expected && Date.now() < deadline) await sleep(5);
  const tDone = nowUs();
  const cpu = process.cpuUsage(cpu0);
  emit({ event: "window_end" });
  for (const s of subs) s.close();
  for (const c of clients) c.close();
  const calls = latencySummary(callLatencies);
  emit({
    event: "burst_result", messages: cfg.messages, subscribers: subs.length, window: cfg.window, batch,
    sendSeconds: (tSent - t0) / 1e6, acceptedPerSec: cfg.messages / ((tSent - t0) / 1e6),
    totalSeconds: (tDone - t0) / 1e6, delivered, deliveredPerSec: delivered / ((tDone - t0) / 1e6),
    missing: expected - delivered, errors, ...latencySummary(latencies),
    callP50Ms: calls.p50Ms, callP99Ms: calls.p99Ms, callMaxMs: calls.maxMs,
    loadgenCpuPct: cpuPercent(cpu, (tDone - t0) / 1e6),
  });
  return 0;
}

// ---------------------------------------------------------------- acks

// S WAMP subscribers of one department; a sender at a fixed rate for warmup + seconds. With
// cfg.ack every subscriber acknowledges what it got as "delivered" once a second, as the
// shipped clients do (one deptcast.ack call per second, the ids of that second), and one in
// cfg.seenEvery also says "seen" for them in its next second. Reports deliveries in the window,
// send-to-delivery latency, and the acknowledgements sent and refused.
async function acks(cfg) {
  const mark = [0, 0, 0];
  let inWindow = false;
  let windowStartUs = Infinity;
  let delivered = 0;
  const latencies = [];
  const ID = /"id":"(\d+)"/;
  const counters = { calls: 0, ids: 0, errors: {} };
  const subs = [];
  for (let n = 0; n < cfg.subscribers.length; n++) {
    const state = { ids: [], seen: [], turn: 0 };
    const handle = await openWithRetry("wamp", cfg.subscribers[n], (data) => {
      const now = nowUs();
      if (!readMark(data, mark) || mark[0] !== 2) return;
      if (inWindow) delivered++;
      if (mark[2] >= windowStartUs) latencies.push(now - mark[2]);
      if (cfg.ack) {
        const m = ID.exec(data.toString("latin1"));
        if (m) state.ids.push(m[1]);
      }
    });
    subs.push({ handle, state, seer: cfg.seenEvery > 0 && n % cfg.seenEvery === 0 });
  }
  const ackCall = (c, ids, which) => {
    counters.calls++;
    counters.ids += ids.length;
    c.call("deptcast.ack", [ids, which]).catch((err) => {
      counters.errors[err.uri || String(err)] = (counters.errors[err.uri || String(err)] || 0) + 1;
    });
  };
  const timers = [];
  if (cfg.ack) {
    subs.forEach((s, n) => {
      // staggered over the second, as independent clients are; one call a second per session
      timers.push(setTimeout(() => timers.push(setInterval(() => {
        const c = s.handle.client;
        if (s.seer && s.state.seen.length && (s.state.turn++ % 2 === 1 || !s.state.ids.length)) {
          ackCall(c, s.state.seen.splice(0), "seen");
        } else if (s.state.ids.length) {
          const ids = s.state.ids.splice(0);
          if (s.seer) s.state.seen.push(...ids);
          ackCall(c, ids, "delivered");
        }
      }, 1000)), (1000 * n) / subs.length));
    });
  }
  const sender = new WampClient();
  await sender.connect(cfg.sender);
  const sendCounters = { ok: 0, errors: {}, outstanding: 0 };
  sender.sendCounters = sendCounters;
  let seq = 0;
  const every = 1000 / cfg.rate;
  const t0 = performance.now();
  const tick = setInterval(() => {
    const due = Math.floor((performance.now() - t0) / every);
    while (seq < due) sender.callCounted("deptcast.send", [cfg.to, makeMessage(2, seq++, cfg.size || 100)]);
  }, 5);
  await sleep(cfg.warmup * 1000);
  emit({ event: "window_start" });
  const cpu0 = process.cpuUsage();
  inWindow = true;
  windowStartUs = nowUs();
  const calls0 = counters.calls;
  await sleep(cfg.seconds * 1000);
  inWindow = false;
  const windowUs = nowUs() - windowStartUs;
  const cpu = process.cpuUsage(cpu0);
  emit({ event: "window_end" });
  const ackCalls = counters.calls - calls0;
  clearInterval(tick);
  await sleep(2000);
  for (const t of timers) { clearTimeout(t); clearInterval(t); }
  for (const s of subs) s.handle.close();
  sender.close();
  emit({
    event: "acks_result", subscribers: subs.length, rate: cfg.rate, ack: Boolean(cfg.ack), sent: seq,
    sendErrors: sendCounters.errors, delivered, deliveredPerSec: delivered / (windowUs / 1e6),
    ackCallsPerSec: ackCalls / (windowUs / 1e6), ackIds: counters.ids, ackErrors: counters.errors,
    ...latencySummary(latencies), loadgenCpuPct: cpuPercent(cpu, windowUs / 1e6),
  });
  return 0;
}

// ---------------------------------------------------------------- main

const MODES = { probe, linkprobe, rates, idle, storm, echo, burst, acks };

async function main() {
  // never outlive the driver: a load generator left behind would load the next measurement
  const parent = process.ppid;
  setInterval(() => { if (process.ppid !== parent) process.exit(3); }, 500).unref();
  process.stdout.on("error", () => process.exit(3));
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  const mode = MODES[cfg.mode];
  if (!mode) throw new Error(`unknown mode ${cfg.mode}`);
  return mode(cfg);
}

main().then((code) => process.exit(code || 0), (err) => {
  console.error(err && err.stack ? err.stack : err);
  emit({ event: "error", error: String(err && err.message ? err.message : err) });
  process.exit(1);
});
