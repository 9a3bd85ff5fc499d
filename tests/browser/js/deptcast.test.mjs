// web/deptcast.js, the entry module: the Client with the real autobahn-js bundle (the one the
// node serves) over a stand-in WebSocket that plays the node (fakes.mjs MiniRouter), on a fake
// clock. Connection, resume by position, token refresh, safe retries, receipts, the ends of a
// session, and a message after GOODBYE.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CONNECTED, CONNECTION_LOST, Client, DeptcastError, NOT_AUTHORIZED, OFFLINE, STOPPED, UNAVAILABLE, isOwn, topicsOf,
} from "../../../web/deptcast.js";
import { claimsOf } from "../../../web/signin.js";
import { FakeClock, HANG, MiniRouter, jwt, settle, wampError } from "./fakes.mjs";

const { default: autobahn } = await import(new URL("../../../web/vendor/autobahn.js", import.meta.url)).catch(() => {
  throw new Error("web/vendor/autobahn.js is missing: build it with scripts/install");
});

const T0 = 1_800_000_000; // seconds since the epoch: the fake clock's start
const D = "deptcast.dept.cardio";
const A = "deptcast.all";
const U = "deptcast.user.cardio_ann";
const token = (iat = T0, ttl = 3600, extra = {}) => jwt({ sub: "ann", dept: "cardio", role: "member", iat, exp: iat + ttl, ...extra });
const id = (n) => String(n).padStart(16, "0");
const env = (n, seq, extra = {}) => ({
  id: id(n), scope: "dept", target: "cardio", sender: "bob", sender_dept: "cardio", message: `m${n}`, ts: 0, seq, ...extra,
});

/**
 * A client of "ann" (cardio, member) on a fake clock, against a MiniRouter. ``procedures`` add
 * to (or replace) the node's: history answers nothing, presence says ann is online, acks pass.
 */
function setup(t, { tok = token(), procedures = {}, positions = () => null, renewToken = null, refuse, accept } = {}) {
  t.mock.method(console, "warn", () => {}); // autobahn-js warns at every close
  const errors = [];
  t.mock.method(console, "error", (...args) => errors.push(args));
  const clock = new FakeClock(T0 * 1000);
  const router = new MiniRouter({
    accept: accept || ((ticket) => {
      const c = claimsOf(ticket);
      return { authid: c.sub, authrole: c.role, authextra: { dept: c.dept } };
    }),
    procedures: {
      "deptcast.history": () => [],
      "deptcast.presence.online": ([dept]) => ({ dept, count: 1, users: ["ann"] }),
      "deptcast.ack": () => null,
      ...procedures,
    },
    refuse,
  }).install();
  const log = { states: [], notices: [], identity: [], ended: [], online: [], receipts: [], token: [], warnings: [] };
  const client = new Client({
    token: tok, renewToken, positions, autobahn, url: "ws://node/ws",
    now: clock.now, schedule: clock.schedule, cancel: clock.cancel, random: () => 0, retry: { jitter: 0 },
    warn: (text) => log.warnings.push(text),
  });
  client.on("state", (state, info) => log.states.push([state, info]));
  client.on("notices", (envs) => log.notices.push(...envs.map((e) => e.message)));
  client.on("identity", (me) => log.identity.push(me));
  client.on("ended", (end) => log.ended.push(end));
  client.on("online", (o) => log.online.push(o));
  client.on("receipts", (c) => log.receipts.push(c));
  client.on("token", (info) => log.token.push(info));
  t.after(() => {
    client.stop();
    router.uninstall();
  });
  return { client, router, clock, log, errors };
}

async function started(client) {
  await client.start();
  await settle(6);
}

test("signs in with its token, subscribes, resumes from the application's positions, then is connected", async (t) => {
  const asked = [];
  const { client, router, log } = setup(t, {
    positions: (me) => {
      asked.push(me);
      return { [D]: 3, [A]: 0, [U]: 1 };
    },
    procedures: {
      "deptcast.history": (args, kwargs) => (kwargs.positions[D] === 3 ? [env(4, 4)] : []),
    },
  });
  await started(client);
  assert.deepEqual(router.tokens, [token()]);
  assert.deepEqual([...router.socket.subscriptions.keys()],
    [D, A, U, "deptcast.receipts.cardio_ann", "deptcast.presence.cardio"], "subscribed before the catch-up");
  assert.deepEqual(router.callsTo("deptcast.history").map((c) => c.kwargs), [
    { positions: { [D]: 3, [A]: 0, [U]: 1 }, limit: 200 }, { positions: { [D]: 4, [A]: 0, [U]: 1 }, limit: 200 }]);
  assert.deepEqual(asked, [{ user: "ann", dept: "cardio", role: "member" }]);
  assert.deepEqual(log.identity, asked);
  assert.deepEqual(log.notices, ["m4"]);
  assert.deepEqual(log.states.map((s) => s[0]), ["connecting", "connected"]);
  assert.equal(client.state, CONNECTED);
  assert.deepEqual(client.positions(), { [D]: 4, [A]: 0, [U]: 1 });
  assert.deepEqual(log.online.at(-1), { dept: "cardio", users: ["ann"] });
  assert.deepEqual(client.me, { user: "ann", dept: "cardio", role: "member" });
  assert.deepEqual(topicsOf(client.me), [D, A, U]);
});

test("what is received is acknowledged as delivered in batches, at most one call a second, own notices not", async (t) => {
  const { client, router, clock, log } = setup(t, { positions: () => ({ [D]: 0, [A]: 0, [U]: 0 }) });
  await started(client);
  for (let seq = 1; seq <= 25; seq += 1) {
    router.publish(D, seq === 7 ? env(seq, seq, { sender: "ann" }) : env(seq, seq));
    await clock.advance(100);
  }
  await clock.advance(2000);
  assert.equal(log.notices.length, 25);
  const acks = router.callsTo("deptcast.ack");
  const ids = acks.flatMap((c) => c.args[0]);
  assert.deepEqual(ids, Array.from({ length: 25 }, (_, i) => id(i + 1)).filter((x) => x !== id(7)));
  assert.ok(acks.every((c) => c.args[1] === "delivered"));
  assert.ok(acks.length >= 3 && acks.length <= 4, `${acks.length} calls in 2.5 s`);
  assert.ok(isOwn(env(7, 7, { sender: "ann" }), client.me));
  client.seen([id(3)]);
  await clock.advance(1000);
  assert.deepEqual(router.callsTo("deptcast.ack").at(-1).args, [[id(3)], "seen"]);
});

test("a send keeps its key across retries after unavailable and a lost connection; the notice shows once", async (t) => {
  const sent = env(9, 1, { sender: "ann", message: "hello" });
  let attempts = 0;
  const { client, router, clock, log } = setup(t, {
    positions: () => ({ [D]: 0, [A]: 0, [U]: 0 }),
    procedures: {
      "deptcast.send": () => {
        attempts += 1;
        if (attempts === 1) throw wampError(UNAVAILABLE, "the store is busy");
        if (attempts === 2) return HANG; // stored, but the answer is lost with the connection
        return sent;
      },
    },
  });
  await started(client);
  const statuses = [];
  const done = client.send("cardio", "hello", { onStatus: (s) => statuses.push(s.state) });
  await settle();
  await clock.advance(750); // the first back-off (1 s, a quarter less at random 0)
  assert.equal(attempts, 2);
  const first = router.socket;
  router.drop(first);
  await settle();
  assert.equal(client.state, "reconnecting");
  await clock.advance(1000); // the link's first retry
  await settle(6);
  assert.equal(client.state, CONNECTED);
  await clock.advance(1500); // the second back-off
  assert.deepEqual(await done, sent);
  const keys = router.callsTo("deptcast.send").map((c) => c.kwargs.key);
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 1, "one key for the notice");
  assert.match(keys[0], /^[A-Za-z0-9_.-]{1,64}$/);
  assert.deepEqual(router.callsTo("deptcast.send").map((c) => c.args), [["cardio", "hello"], ["cardio", "hello"], ["cardio", "hello"]]);
  assert.deepEqual(statuses, ["sending", "retrying", "sending", "retrying", "sending", "sent"]);
  router.publish(D, sent); // its own event comes too
  await settle();
  assert.deepEqual(log.notices, ["hello"], "once");
  assert.equal(router.sockets.length, 2);
});

test("a given key is used as it is; a malformed one is refused before anything is sent", async (t) => {
  const { client, router } = setup(t, { procedures: { "deptcast.send": () => env(1, 1, { sender: "ann" }) } });
  await started(client);
  await client.send("cardio", "x", { key: "my-key.1" });
  assert.equal(router.callsTo("deptcast.send")[0].kwargs.key, "my-key.1");
  await assert.rejects(client.send("cardio", "x", { key: "no spaces" }), { uri: "deptcast.error.invalid_frame" });
  assert.equal(router.callsTo("deptcast.send").length, 1);
});

test("a call whose connection goes is rejected with connection_lost, not left waiting for ever", async (t) => {
  const { client, router } = setup(t, { procedures: { "deptcast.receipts": () => HANG } });
  await started(client);
  const asking = client.receipts("n1");
  await settle();
  router.drop(router.socket);
  await assert.rejects(asking, (err) => err instanceof DeptcastError && err.uri === CONNECTION_LOST);
});

test("receipts and recipients call the contract's procedures; receipt events reach the application", async (t) => {
  const counts = { id: "n1", audience: 3, seen: 1, delivered: 1, pending: 1 };
  const { client, router, log } = setup(t, {
    procedures: {
      "deptcast.receipts": () => counts,
      "deptcast.recipients": ([, state]) => ({ users: [{ dept: "cardio", user: state }], next: null }),
    },
  });
  await started(client);
  assert.deepEqual(await client.receipts("n1"), counts);
  await client.recipients("n1", "pending");
  await client.recipients("n1", "delivered", { after: "cur", limit: 50 });
  assert.deepEqual(router.callsTo("deptcast.receipts").map((c) => c.args), [["n1"]]);
  assert.deepEqual(router.callsTo("deptcast.recipients").map((c) => [c.args, c.kwargs]), [
    [["n1", "pending"], { limit: 200 }], [["n1", "delivered"], { after: "cur", limit: 50 }]]);
  router.publish("deptcast.receipts.cardio_ann", { ...counts, seen: 2, delivered: 0 });
  router.publish("deptcast.receipts.cardio_ann", { id: "n1", seen: "lots" });
  await settle();
  assert.deepEqual(log.receipts, [{ ...counts, seen: 2, delivered: 0 }], "malformed counts are dropped");
});

test("ahead of exp the open session takes the renewed token: no second connection, nothing missed", async (t) => {
  const newer = token(T0 + 50, 100);
  const sources = [];
  const { client, router, clock, log } = setup(t, {
    tok: token(T0, 100),
    positions: () => ({ [D]: 0, [A]: 0, [U]: 0 }),
    renewToken: (held) => {
      sources.push(held);
      return newer;
    },
    procedures: { "deptcast.session.refresh": ([given]) => ({ exp: claimsOf(given).exp }) },
  });
  await started(client);
  await clock.advance(49_000);
  assert.deepEqual(sources, []);
  router.publish(D, env(1, 1));
  await clock.advance(1_000); // half of 100 s: 60 s before exp would be sooner
  router.publish(D, env(2, 2));
  await settle();
  assert.deepEqual(sources, [{ user: "ann", dept: "cardio", role: "member", exp: T0 + 100 }]);
  assert.deepEqual(router.callsTo("deptcast.session.refresh").map((c) => c.args), [[newer]]);
  assert.deepEqual(log.token, [{ exp: T0 + 150 }]);
  assert.equal(router.sockets.length, 1);
  assert.deepEqual(log.notices, ["m1", "m2"]);
  assert.equal(client.state, CONNECTED);
});

test("refresh answered not_authorized (or a node without it): reconnect with the new token, resume by position", async (t) => {
  for (const refusal of [NOT_AUTHORIZED, null]) {
    const newer = token(T0 + 2000, 3600);
    const procedures = refusal ? { "deptcast.session.refresh": () => { throw wampError(refusal); } } : {};
    let read = 0;
    procedures["deptcast.history"] = (args, kwargs) => (kwargs.positions[D] < 5 && read++ === 0 ? [env(5, 5)] : []);
    const { client, router, clock, log } = setup(t, {
      positions: () => ({ [D]: 4, [A]: 0, [U]: 0 }), renewToken: () => newer, procedures,
    });
    await started(client);
    await clock.advance(2880_000);
    await settle(6);
    assert.equal(router.sockets.length, 2, String(refusal));
    assert.deepEqual(router.tokens, [token(), newer]);
    assert.deepEqual(router.callsTo("deptcast.history").at(-2).kwargs.positions, { [D]: 5, [A]: 0, [U]: 0 },
      "the new session resumes where the old one was");
    assert.deepEqual(log.notices, ["m5"]);
    assert.equal(client.state, CONNECTED);
    assert.deepEqual(log.ended, []);
    client.stop();
    router.uninstall();
  }
});

test("at exp without a newer token the node's GOODBYE ends the client: expired, no reconnect, until a new token", async (t) => {
  const { client, router, clock, log } = setup(t, { tok: token(T0, 100), renewToken: () => null });
  await started(client);
  await clock.advance(100_000);
  router.goodbye(router.socket, "deptcast.close.token_expired");
  await settle(6);
  assert.deepEqual(log.ended, [{ reason: "expired", uri: "deptcast.close.token_expired", message: "" }]);
  assert.deepEqual(log.states.at(-1)[0], OFFLINE);
  await clock.advance(120_000);
  assert.equal(router.sockets.length, 1, "no reconnect with an expired token");
  await assert.rejects(client.send("cardio", "late"), { uri: STOPPED });
  assert.equal(router.sockets[0].sentAfterClose.length, 0, "the GOODBYE reply is not sent on a closing socket");
  // the application signs the user in again: the client comes back with the new token
  assert.equal(client.setToken(token(T0 + 300, 3600)), "newer");
  await settle(6);
  assert.equal(client.state, CONNECTED);
  assert.equal(router.tokens.at(-1), token(T0 + 300, 3600));
});

test("token_expired while a newer token is at hand (its hand-over failed): signs in again with it", async (t) => {
  const newer = token(T0 + 60, 3600);
  const { client, router, clock, log } = setup(t, {
    tok: token(T0, 100), renewToken: () => newer,
    procedures: { "deptcast.session.refresh": () => { throw wampError(UNAVAILABLE); } },
  });
  await started(client);
  await clock.advance(60_000);
  assert.ok(router.callsTo("deptcast.session.refresh").length >= 1);
  router.goodbye(router.socket, "deptcast.close.token_expired");
  await settle(6);
  await clock.advance(1000);
  await settle(6);
  assert.deepEqual(log.ended, []);
  assert.equal(router.tokens.at(-1), newer);
  assert.equal(client.state, CONNECTED);
});

test("revoked: the client stops for good and says so; a message after the GOODBYE is accepted quietly", async (t) => {
  const { client, router, clock, log, errors } = setup(t, { renewToken: () => token(T0 + 10) });
  await started(client);
  router.lateDelivery = true; // a WebSocket that still delivers what arrived after close()
  const socket = router.socket;
  router.goodbye(socket, "deptcast.close.revoked", "revoked by an admin");
  socket.deliver([36, socket.subscriptions.get(D), 1, {}, [env(1, 1)]]); // the EVENT the router had already sent
  await settle(6);
  assert.deepEqual(log.ended, [{ reason: "revoked", uri: "deptcast.close.revoked", message: "revoked by an admin" }]);
  assert.deepEqual(errors, [], "no console error");
  assert.equal(client.lateMessages, 1);
  assert.deepEqual(log.notices, [], "the late event is not delivered");
  await clock.advance(600_000);
  assert.equal(router.sockets.length, 1, "never reconnects by itself");
  assert.equal(client.state, OFFLINE);
});

test("a token refused at sign-in as revoked ends as revoked; as otherwise invalid, as refused", async (t) => {
  for (const [message, reason] of [["revoked", "revoked"], ["bad signature", "refused"]]) {
    const { client, router, clock, log } = setup(t, {
      accept: () => ({ abort: "deptcast.error.invalid_token", message }),
    });
    await started(client);
    await clock.advance(60_000);
    assert.deepEqual(log.ended, [{ reason, uri: "deptcast.error.invalid_token", message }]);
    assert.equal(router.sockets.length, 1);
    assert.equal(log.identity.length, 0, "never accepted");
    client.stop();
    router.uninstall();
  }
});

test("a node without receipts, presence or deptcast.ack: the client goes on without them", async (t) => {
  const { client, router, clock, log } = setup(t, {
    positions: () => ({ [D]: 0, [A]: 0, [U]: 0 }),
    refuse: new Set(["deptcast.receipts.cardio_ann", "deptcast.presence.cardio"]),
    procedures: { "deptcast.ack": () => { throw wampError("wamp.error.not_authorized"); } }, // as today's router answers
  });
  await started(client);
  assert.equal(client.state, CONNECTED);
  assert.deepEqual(log.online, [{ dept: "cardio", users: null }]);
  router.publish(D, env(1, 1));
  router.publish(D, env(2, 2));
  await clock.advance(3000);
  router.publish(D, env(3, 3));
  await clock.advance(3000);
  assert.deepEqual(log.notices, ["m1", "m2", "m3"]);
  assert.equal(router.callsTo("deptcast.ack").length, 1, "asked once, then off");
  assert.deepEqual(log.warnings.filter((w) => /takes no receipts/.test(w)).length, 1);
});

test("stop signs out: GOODBYE to the node, calls waiting for a connection fail with stopped", async (t) => {
  const { client, router, log } = setup(t);
  router.down = true;
  await client.start();
  await settle();
  const waiting = client.receipts("n1");
  client.stop();
  await assert.rejects(waiting, { uri: STOPPED });
  assert.equal(log.states.at(-1)[0], OFFLINE);
  assert.throws(() => client.on("nosuch", () => {}), /no event "nosuch"/);
});
