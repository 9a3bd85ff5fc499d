// web/link.js: the WebSocket URL, retry delays, and when the link (re)connects, against a
// stand-in for autobahn's Connection (the same callbacks: onopen, onclose, open, close).

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CONNECTED, CONNECTING, GOING_AWAY, GOING_AWAY_SPREAD, Link, OFFLINE, RECONNECTING, REFUSALS, isLateMessage, nodeUrl,
  retryDelay,
} from "../../../web/link.js";

const settle = () => new Promise((resolve) => setImmediate(resolve));

test("the WebSocket URL is beside the page, without query or fragment", () => {
  assert.equal(nodeUrl("http://127.0.0.1:8080/"), "ws://127.0.0.1:8080/ws");
  assert.equal(nodeUrl("https://host.example/deptcast/index.html#x"), "wss://host.example/deptcast/ws");
  assert.equal(nodeUrl("http://h:1/?q=1"), "ws://h:1/ws");
});

test("retry delays grow from about 1 s to about 20 s, jittered by a quarter", () => {
  for (let run = 0; run < 50; run += 1) {
    const first = retryDelay(0);
    const last = retryDelay(11);
    assert.ok(first >= 0.75 && first <= 1.25, String(first));
    assert.ok(last >= 15 && last <= 25, String(last));
  }
  const calm = (attempt) => retryDelay(attempt, { jitter: 0 });
  assert.deepEqual([0, 1, 2, 7, 30].map(calm), [1, 1.6, 1.6 ** 2, 20, 20]);
});

/** A stand-in for autobahn.Connection: records what the link does with it. */
class FakeConnection {
  constructor(options, made) {
    this.options = options;
    this.opened = 0;
    this.closed = [];
    made.push(this);
  }
  open() {
    this.opened += 1;
  }
  close(reason, message) {
    this.closed.push([reason, message]);
  }
  /** The router accepted: a session joins. */
  join(details = {}) {
    this.session = { isOpen: true, id: Math.random() };
    this.onopen(this.session, details);
    return this.session;
  }
  /** The connection ends, as autobahn reports it. */
  end(reason, details) {
    if (this.session) this.session.isOpen = false;
    return this.onclose(reason, details);
  }
}

function harness({ onJoin = async () => {}, random = Math.random } = {}) {
  const made = [];
  const states = [];
  const lost = [];
  const timers = new Map();
  let next = 1;
  const link = new Link({
    url: "ws://node/ws",
    realm: "deptcast",
    token: () => "the-token",
    connect: (options) => new FakeConnection(options, made),
    onJoin,
    onState: (state, info) => states.push([state, info]),
    onLost: (session) => lost.push(session),
    retry: { jitter: 0 },
    schedule: (fn, ms) => {
      timers.set(next, { fn, ms });
      return next++;
    },
    cancel: (h) => timers.delete(h),
    random,
  });
  const fire = () => {
    const due = [...timers.values()];
    timers.clear();
    for (const t of due) t.fn();
  };
  return { link, made, states, lost, timers, fire };
}

test("connecting, then connected once onJoin resolves; autobahn's own retries are off", async () => {
  let release;
  const { link, made, states } = harness({ onJoin: () => new Promise((r) => { release = r; }) });
  link.start();
  assert.deepEqual(states.map((s) => s[0]), [CONNECTING]);
  const [conn] = made;
  assert.equal(conn.opened, 1);
  assert.equal(conn.options.max_retries, 0);
  assert.deepEqual(conn.options.authmethods, ["ticket"]);
  assert.equal(conn.options.onchallenge(null, "ticket"), "the-token");
  assert.throws(() => conn.options.onchallenge(null, "wampcra"), /unexpected authentication method/);
  const session = conn.join();
  await settle();
  assert.equal(link.session, session);
  assert.equal(link.state, CONNECTING, "not connected while catching up");
  release();
  await settle();
  assert.deepEqual(states.map((s) => s[0]), [CONNECTING, CONNECTED]);
  link.start(); // a no-op while connected
  assert.equal(made.length, 1);
});

test("a lost connection is reported, then retried after a growing delay on a fresh connection", async () => {
  const { link, made, states, lost, timers, fire } = harness();
  link.start();
  const session = made[0].join();
  await settle();
  assert.equal(made[0].end("lost", { reason: null }), true, "autobahn must not retry by itself");
  assert.deepEqual(lost, [session]);
  assert.deepEqual(states.at(-1)[0], RECONNECTING);
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1000]);
  fire();
  assert.equal(made.length, 2);
  made[1].end("unreachable", {}); // never joined: nothing lost
  assert.deepEqual(lost, [session]);
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1600]);
  made[1].onclose("late", {}); // an old connection's late report changes nothing
  fire();
  made[2].join();
  await settle();
  assert.equal(link.state, CONNECTED);
  made[2].end("lost", {});
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1000], "a join resets the back-off");
});

test("a refusal the same token would meet again stops the link, offline, without retrying", () => {
  const { link, made, states, timers } = harness();
  link.start();
  made[0].end("closed", { reason: "deptcast.error.token_expired", message: "expired" });
  assert.deepEqual(states.at(-1), [OFFLINE, { refusal: "deptcast.error.token_expired", message: "expired" }]);
  assert.equal(timers.size, 0);
  assert.ok(REFUSALS.has("deptcast.error.invalid_token"));
  link.start(); // a new token: the page starts it again
  assert.equal(made.length, 2);
});

test("a failed catch-up drops the session and tries again", async () => {
  const failure = new Error("unavailable");
  const { link, made, timers } = harness({ onJoin: async () => { throw failure; } });
  link.start();
  made[0].join();
  await settle();
  assert.deepEqual(made[0].closed, [["wamp.close.normal", "catch-up failed"]]);
  made[0].end("closed", {});
  assert.equal(timers.size, 1);
  assert.equal(link.lastError, null);
});

test("stop: offline, the session reported lost, no retry; retryNow only while waiting", async () => {
  const { link, made, states, lost, timers } = harness();
  link.start();
  made[0].join();
  await settle();
  made[0].end("lost", {});
  assert.equal(timers.size, 1);
  link.retryNow();
  assert.equal(made.length, 2, "retried at once");
  assert.equal(timers.size, 0);
  const session = made[1].join();
  await settle();
  link.stop("signed out");
  assert.deepEqual(made[1].closed, [["wamp.close.normal", "signed out"]]);
  assert.equal(lost.at(-1), session);
  assert.deepEqual(states.at(-1), [OFFLINE, { reason: "signed out" }]);
  made[1].end("closed", {});
  link.retryNow();
  assert.equal(made.length, 2, "stopped: no retry");
});

test("a draining node's GOODBYE (system_shutdown) reconnects within half a second, spread at random", async () => {
  assert.equal(GOING_AWAY, "wamp.close.system_shutdown");
  assert.equal(GOING_AWAY_SPREAD, 0.5);
  const draws = [0.5, 0, 0.999];
  const { link, made, states, lost, timers, fire } = harness({ random: () => draws.shift() });
  link.start();
  made[0].join();
  await settle();
  // an ordinary loss first: the back-off has grown by the time the node drains
  made[0].end("lost", {});
  fire();
  made[1].end("unreachable", {});
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1600]);
  fire();
  const session = made[2].join();
  await settle();
  assert.equal(made[2].end("closed", { reason: GOING_AWAY, message: "node stopping" }), true);
  assert.equal(lost.at(-1), session);
  assert.deepEqual(states.at(-1), [RECONNECTING, { retryIn: 0.25, lost: "closed", error: null, goingAway: true }]);
  assert.deepEqual([...timers.values()].map((t) => t.ms), [250], "at once, not after the back-off");
  fire();
  assert.equal(made.length, 4, "a fresh connection (through the balancer: another node)");
  // the same while the next one has not joined yet, and the spread reaches from 0 to 0.5 s
  made[3].end("closed", { reason: GOING_AWAY });
  assert.deepEqual([...timers.values()].map((t) => t.ms), [0]);
  fire();
  made[4].end("closed", { reason: GOING_AWAY });
  const [last] = [...timers.values()].map((t) => t.ms);
  assert.ok(last > 499 && last < 500, String(last));
  fire();
  // if the new node cannot be reached either, the back-off starts afresh
  made[5].end("unreachable", {});
  assert.deepEqual([...timers.values()].map((t) => t.ms), [1000]);
});

test("the spread of a drain is random by default: every delay within 0 to 0.5 s", async () => {
  const delays = [];
  for (let i = 0; i < 40; i += 1) {
    const { link, made, timers } = harness();
    link.start();
    made[0].join();
    await settle();
    made[0].end("closed", { reason: GOING_AWAY });
    delays.push(...[...timers.values()].map((t) => t.ms));
  }
  assert.equal(delays.length, 40);
  assert.ok(delays.every((ms) => ms >= 0 && ms <= 500), String(delays));
  assert.ok(new Set(delays).size > 30, "spread, not one instant");
});

test("reconnect: the session is reported lost and a new connection opens at once, not after a back-off", async () => {
  const { link, made, states, lost, timers } = harness();
  link.start();
  const session = made[0].join();
  await settle();
  link.reconnect();
  assert.deepEqual(lost, [session]);
  assert.deepEqual(made[0].closed, [["wamp.close.normal", "reconnecting"]]);
  assert.equal(made.length, 2);
  assert.equal(made[1].opened, 1);
  assert.deepEqual(states.at(-1), [RECONNECTING, { retryIn: 0 }]);
  assert.equal(made[0].end("closed", { reason: "wamp.close.normal" }), true, "the old one's close changes nothing");
  assert.equal(timers.size, 0);
  made[1].join();
  await settle();
  assert.equal(link.state, CONNECTED);
  link.stop();
  link.reconnect();
  assert.equal(made.length, 2, "stopped: no reconnect");
});

test("the GOODBYE reasons of an expired token and a revocation stop the link by default", async () => {
  assert.ok(REFUSALS.has("deptcast.close.token_expired"));
  assert.ok(REFUSALS.has("deptcast.close.revoked"));
  const { link, made, states, timers } = harness();
  link.start();
  made[0].join();
  await settle();
  made[0].end("closed", { reason: "deptcast.close.revoked", message: "" });
  assert.deepEqual(states.at(-1), [OFFLINE, { refusal: "deptcast.close.revoked", message: "" }]);
  assert.equal(timers.size, 0);
});

test("shouldStop decides which close reasons stop the link", async () => {
  const asked = [];
  const made = [];
  const link = new Link({
    url: "ws://node/ws", realm: "deptcast", token: () => "t", onJoin: async () => {}, onState: () => {},
    connect: (options) => new FakeConnection(options, made), retry: { jitter: 0 },
    schedule: () => 1, cancel: () => {},
    shouldStop: (refusal, details) => {
      asked.push([refusal, details.message]);
      return refusal === "x.stop";
    },
  });
  link.start();
  made[0].end("closed", { reason: "deptcast.error.token_expired", message: "m" });
  assert.equal(link.state, CONNECTING, "not stopped: a newer token is at hand, say");
  link.retryNow();
  made[1].end("closed", { reason: "x.stop", message: "" });
  assert.equal(link.state, OFFLINE);
  assert.deepEqual(asked, [["deptcast.error.token_expired", "m"], ["x.stop", ""]]);
});

test("a late message after GOODBYE, as the real autobahn-js reports it, is accepted quietly", async (t) => {
  // autobahn-js itself (the bundle the page loads), driven through a stand-in WebSocket
  const bundle = new URL("../../../web/vendor/autobahn.js", import.meta.url);
  const { default: autobahn } = await import(bundle).catch(() => {
    throw new Error("web/vendor/autobahn.js is missing: build it with scripts/install");
  });
  const errors = [];
  t.mock.method(console, "error", (...args) => errors.push(args));
  t.mock.method(console, "warn", () => {});

  /** The messages a router sends, to a real autobahn Session on a stand-in socket. */
  function sessionOn(onInternalError) {
    const socket = { sent: [], closed: [], send(msg) { this.sent.push(msg); }, close(code, reason) { this.closed.push([code, reason]); } };
    const session = new autobahn.Session(socket, autobahn.util.deferred_factory(), null, undefined, onInternalError);
    socket.onmessage(
      [2, 77, { roles: { broker: { features: {} }, dealer: { features: {} } }, authid: "ann", authrole: "member" }]);
    return { session, socket };
  }
  const late = (socket) => {
    socket.onmessage([6, {}, "deptcast.close.revoked"]); // GOODBYE
    socket.onmessage([36, 5, 9, {}, [{ id: "1", scope: "dept", message: "late" }]]); // EVENT after it
  };

  // without a handler: what the flaky drain test printed, and what the link prevents
  const bare = sessionOn(undefined);
  late(bare.socket);
  assert.equal(errors.length, 1);
  assert.match(String(errors[0][1]), /protocol violation: unexpected message type 36/);
  errors.length = 0;

  // through the link: the connection's on_internal_error, on a connection that had joined
  const other = [];
  const made = [];
  const link = new Link({
    url: "ws://node/ws", realm: "deptcast", token: () => "t", onJoin: async () => {}, onState: () => {},
    connect: (options) => new FakeConnection(options, made), schedule: () => 1, cancel: () => {},
    onInternalError: (err) => other.push(err),
  });
  link.start();
  const handler = made[0].options.on_internal_error;
  handler(new Error("failing transport due to protocol violation: unexpected message type 36"));
  assert.equal(other.length, 1, "before a join it is a real fault: reported");
  made[0].join();
  await settle();
  const { socket } = sessionOn(handler);
  late(socket);
  assert.deepEqual(socket.sent.map((m) => m[0]), [6], "autobahn answered the GOODBYE");
  assert.equal(link.lateMessages, 1);
  assert.equal(other.length, 1);
  assert.deepEqual(errors, [], "no console error");
  handler(new Error("something else"));
  assert.equal(other.length, 2, "other internal errors are still reported");
  assert.ok(isLateMessage(new Error("failing transport due to protocol violation: unexpected message type 50")));
  assert.ok(!isLateMessage(new Error("EVENT received for non-subscribed subscription ID 5")));
});
