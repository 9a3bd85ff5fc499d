// The failover step's load generator (driven by bench/failover.py): N WAMP clients of one
// department on node A, a sender on node B; when A dies, each client reconnects to B (after a
// random delay, as browsers spread their retries), subscribes again and reads what it missed
// with deptcast.history(positions), as the shipped clients do. Every notice the sender had
// accepted must reach every client once, live or from history.
//
//   node failover.js config.json
//
// config: {clients: [{authid, token}], urls: [A, B], topic, sender: {url, authid, token}, to,
//          rate (notices/s), concurrency, jitterMs, timeout (s), drain (s), step (mark step, default 7)}
// stdin:  "go" once the driver is ready to kill A (the sender starts), "killed <µs monotonic>"
// stdout: JSON lines: ready, sending, back (progress), result
"use strict";

const fs = require("fs");
const readline = require("readline");
const { WampClient } = require("./clients");
const { nowUs, makeMessage, readMark } = require("./mark");

function emit(obj) { process.stdout.write(JSON.stringify(obj) + "\n"); }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// the wait after failed attempt number `n` (0-based) when the node gave no Retry-After: the browser
// client's schedule (web/link.js retryDelay: 1 s ×1.6 per attempt up to 20 s, ±25 %; a retry
// every 0.25–5 s kept 18,000 clients' connections coming faster than a node could even refuse them)
const retryMs = (n) => Math.max(200, 1000 * Math.min(20, 1.6 ** n) * (1 + 0.25 * (2 * Math.random() - 1)));
// a request that gets no answer in 30 s fails (and its connection closes): a client must not wait for ever
function within(promise, c, text) {
  let timer = null;
  const late = new Promise((_, reject) => { timer = setTimeout(() => { c.close(); reject(new Error(text)); }, 30000); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}
// the mark's step of this benchmark's notices: one per generator process when the driver splits
// the clients over several (each checks its own sender's notices)
let STEP = 7;
const SEQ = /"seq":\s*(\d+)/;

async function main() {
  const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  if (cfg.step) STEP = cfg.step;
  const n = cfg.clients.length;
  const got = Array.from({ length: n }, () => new Set());
  const lastSeq = new Float64Array(n); // the highest topic seq seen
  const backUs = new Float64Array(n); // when each was resubscribed and caught up on B
  const attempts = new Int32Array(n);
  const clients = new Array(n);
  const mark = [0, 0, 0];
  let failures = 0;
  let refused = 0; // attempts answered 503 (the node busy authenticating others)
  let dups = 0; // copies seen twice (live on B and again from history: a client drops them by seq)

  const take = (i, data) => {
    if (!readMark(data, mark) || mark[0] !== STEP) return;
    if (got[i].has(mark[1])) dups++; else got[i].add(mark[1]);
    const text = typeof data === "string" ? data : data.toString();
    const m = SEQ.exec(text);
    if (m && Number(m[1]) > lastSeq[i]) lastSeq[i] = Number(m[1]);
  };

  async function open(i, url, onLive = null) {
    const c = new WampClient();
    // a node that takes the connection but never answers must not hold the client for ever
    let timer = null;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => { c.close(); reject(new Error("no WELCOME within 30 s")); }, 30000);
    });
    try {
      await Promise.race([c.connect({ url, authid: cfg.clients[i].authid, token: cfg.clients[i].token }), late]);
    } finally { clearTimeout(timer); }
    c.onEvent = onLive ? (data) => { take(i, data); onLive(data); } : (data) => take(i, data);
    await within(c.subscribe(cfg.topic), c, "no SUBSCRIBED within 30 s");
    return c;
  }

  // 1. every client on node A
  const t0 = Date.now();
  let next = 0;
  async function lane() {
    while (next < n) {
      const i = next++;
      for (let a = 0; ; a++) {
        try { clients[i] = await open(i, cfg.urls[0]); break; } catch (err) {
          if (a >= 5) throw err;
          await sleep(500 * (a + 1));
        }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(cfg.concurrency || 200, n) }, lane));
  emit({ event: "ready", clients: n, seconds: (Date.now() - t0) / 1000 });

  const rl = readline.createInterface({ input: process.stdin });
  const lines = [];
  let wake = null;
  rl.on("line", (line) => { lines.push(line.trim()); if (wake) wake(); });
  const nextLine = async () => { while (!lines.length) await new Promise((r) => { wake = r; }); return lines.shift(); };

  // 2. the sender on node B, from "go" on
  await nextLine();
  const sender = new WampClient();
  await sender.connect(cfg.sender);
  const accepted = new Set();
  let sent = 0;
  let sendErrors = 0;
  let sending = true;
  const sendStart = nowUs();
  const sendLoop = (async () => {
    while (sending) {
      const due = Math.floor(((nowUs() - sendStart) / 1e6) * cfg.rate);
      while (sent < due) {
        const seq = sent++;
        sender.call("deptcast.send", [cfg.to, makeMessage(STEP, seq, 100)])
          .then(() => accepted.add(seq), () => { sendErrors++; });
      }
      await sleep(20);
    }
  })();
  emit({ event: "sending" });

  // 3. when A dies: each client back on B after a random delay, caught up from history
  let killedUs = 0;
  let back = 0;
  let errorsShown = 0;
  async function reconnect(i) {
    await sleep(Math.random() * (cfg.jitterMs || 0));
    const deadline = Date.now() + cfg.timeout * 1000;
    // where it was: events that reach it on B before history is read must not move this on
    const from = lastSeq[i];
    let failed = 0; // attempts that failed other than by a 503
    for (;;) {
      attempts[i]++;
      let c = null;
      try {
        // the first notice that reached it live on B: everything from it on comes live (the
        // subscription was made before the history is read), so paging ends once the history
        // reaches it; a client that read until an empty page, while each of its history calls
        // took longer than the notices' interval, would never have ended (every page held the
        // notices sent during the call before)
        let firstLive = Infinity;
        const onLive = (data) => {
          const m = SEQ.exec(typeof data === "string" ? data : data.toString());
          if (m && Number(m[1]) < firstLive) firstLive = Number(m[1]);
        };
        c = await open(i, cfg.urls[1], onLive);
        clients[i] = c;
        // what it missed: the topic's notices after the last seq it saw, page by page
        let position = from;
        while (position < firstLive - 1) {
          if (Date.now() > deadline) throw new Error(`still catching up ${cfg.timeout} s after the first retry`);
          const args = await within(c.call("deptcast.history", [], { positions: { [cfg.topic]: position } }), c,
            "no history answer within 30 s");
          const page = Array.isArray(args) ? args[0] : null; // the RESULT's arguments: [envelopes]
          if (!Array.isArray(page) || page.length === 0) break;
          for (const env of page) {
            take(i, JSON.stringify(env));
            if (typeof env.seq === "number" && env.seq > position) position = env.seq;
          }
        }
        backUs[i] = nowUs();
        back++;
        return;
      } catch (err) {
        if (c) c.close(); // a session whose catch-up failed: the next attempt is a new one
        if (Date.now() > deadline) { failures++; return; }
        if (err && err.status === 503) {
          // the node is busy authenticating others: come back when it says, spread by ±50 %
          refused++;
          await sleep(err.retryAfter == null ? retryMs(failed++) : err.retryAfter * 1000 * (0.5 + Math.random()));
          continue;
        }
        if (errorsShown++ < 5) console.error(`client ${i} on B: ${err && err.message ? err.message : err}`);
        await sleep(retryMs(failed++));
      }
    }
  }
  const reconnects = [];
  for (let i = 0; i < n; i++) {
    const ws = clients[i].ws;
    ws.on("close", () => { reconnects.push(reconnect(i)); });
  }
  const progress = setInterval(() => emit({ event: "back", back, at: nowUs() }), 1000);
  const killed = await nextLine();
  console.error(`killed; ${reconnects.length} closed so far`);
  killedUs = Number(killed.split(" ")[1]);
  const waitEnd = Date.now() + cfg.timeout * 1000;
  while (back + failures < n && Date.now() < waitEnd) await sleep(100);
  await Promise.all(reconnects);
  clearInterval(progress);

  console.error(`back ${back}, failed ${failures}, accepted ${accepted.size} of ${sent}`);
  // 4. a little more sending on B with everyone there, then the drain
  await sleep(2000);
  sending = false;
  await sendLoop;
  const drainEnd = Date.now() + cfg.drain * 1000;
  let missing = 0;
  for (;;) {
    missing = 0;
    for (let i = 0; i < n; i++) for (const s of accepted) if (!got[i].has(s)) missing++;
    if (missing === 0 || Date.now() > drainEnd) break;
    await sleep(250);
  }
  const curve = Array.from(backUs).filter((t) => t > 0).map((t) => (t - killedUs) / 1e6).sort((a, b) => a - b);
  emit({
    event: "result", clients: n, back: curve.length, failures, accepted: accepted.size, sent, sendErrors,
    missing, dups, killedUs, backSeconds: curve,
    attempts: Array.from(attempts).reduce((a, b) => a + b, 0), refused,
  });
  for (const c of clients) if (c) c.close();
  sender.close();
  return 0;
}

// exit once stdout has taken everything: the result line of 10,000 clients is over 64 KiB, and an
// exit right after writing it cut it there
const exitAfterWrites = (code) => process.stdout.write("", () => process.exit(code));

main().then((code) => exitAfterWrites(code || 0), (err) => {
  console.error(err && err.stack ? err.stack : err);
  emit({ event: "error", error: String(err && err.message ? err.message : err) });
  exitAfterWrites(1);
});
