// web/receipts.js: acknowledgements in batches at most once a second, the seen rule (visible for
// a second in a focused page), receipt counts and their text, and the update throttle, against a
// fake clock.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CONNECTION_LOST, DeptcastError, INVALID_FRAME, NO_SUCH_PROCEDURE, RATE_LIMITED, ROUTER_NOT_AUTHORIZED, UNAVAILABLE,
} from "../../../web/errors.js";
import {
  ACK_BATCH, AckQueue, DELIVERED, SEEN, SeenRule, Throttle, mergeCounts, receiptSummary,
} from "../../../web/receipts.js";
import { FakeClock, settle } from "./fakes.mjs";

/** A queue on a fake clock whose deptcast.ack calls are logged and answered by ``answer``. */
function queue(answer = () => undefined, options = {}) {
  const clock = new FakeClock(10000);
  const calls = [];
  const warnings = [];
  const acks = new AckQueue({
    send: async (ids, state) => {
      calls.push({ at: clock.time, ids: [...ids], state });
      const outcome = answer(ids, state);
      if (outcome && outcome.error) throw outcome;
      return outcome;
    },
    warn: (text) => warnings.push(text),
    now: clock.now,
    schedule: clock.schedule,
    cancel: clock.cancel,
    ...options,
  });
  return { acks, clock, calls, warnings };
}

const ids = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => `id${from + i}`);

test("acknowledgements go in batches, at most one call a second, and wait for a connection", async () => {
  const { acks, clock, calls } = queue();
  acks.add(ids(1, 3), DELIVERED);
  await clock.advance(5000);
  assert.deepEqual(calls, [], "offline: they wait");
  acks.online(true);
  acks.add(ids(4, 5), DELIVERED);
  await clock.advance(0);
  assert.deepEqual(calls, [{ at: 15000, ids: ids(1, 5), state: DELIVERED }]);
  for (let i = 6; i <= 30; i += 1) {
    acks.add([`id${i}`], DELIVERED); // one every 100 ms
    await clock.advance(100);
  }
  await clock.advance(1000);
  assert.deepEqual(calls.map((c) => c.at - 15000), [0, 1000, 2000, 3000]);
  assert.deepEqual(calls.flatMap((c) => c.ids), ids(1, 30), "each once, in order");
  acks.add(["id2", "id2"], DELIVERED);
  await clock.advance(1000);
  assert.deepEqual(calls.at(-1).ids, ["id2"], "an id queued twice goes once");
});

test("a batch holds at most ACK_BATCH ids; delivered and seen take turns", async () => {
  const { acks, clock, calls } = queue();
  acks.online(true);
  acks.add(ids(1, ACK_BATCH + 10), DELIVERED);
  acks.add(["s1", "s2"], SEEN);
  await clock.advance(3000);
  assert.deepEqual(calls.map((c) => [c.state, c.ids.length]), [[DELIVERED, ACK_BATCH], [SEEN, 2], [DELIVERED, 10]]);
});

test("a failure that passes keeps the ids for the next call; a rate limit waits its retry_after", async () => {
  const answers = [new DeptcastError(UNAVAILABLE), new DeptcastError(CONNECTION_LOST),
    new DeptcastError(RATE_LIMITED, "", { retry_after: 5 }), undefined];
  const { acks, clock, calls } = queue(() => answers.shift());
  acks.online(true);
  acks.add(["a", "b"], DELIVERED);
  await clock.advance(0);
  acks.add(["c"], DELIVERED);
  await clock.advance(10000);
  assert.deepEqual(calls.map((c) => [c.at - 10000, c.ids]), [
    [0, ["a", "b"]], [1000, ["a", "b", "c"]], [2000, ["a", "b", "c"]], [7000, ["a", "b", "c"]]]);
  assert.equal(acks.size, 0);
});

test("a node without deptcast.ack turns acknowledging off; another refusal drops that batch", async () => {
  for (const uri of [NO_SUCH_PROCEDURE, ROUTER_NOT_AUTHORIZED]) await ackOff(uri);
});

async function ackOff(refusal) {
  const answers = [new DeptcastError(INVALID_FRAME, "bad ids"), { error: refusal, args: [], kwargs: {} }];
  const { acks, clock, calls, warnings } = queue(() => answers.shift());
  acks.online(true);
  acks.add(["x"], SEEN);
  await clock.advance(0);
  acks.add(["y"], DELIVERED);
  await clock.advance(1000);
  assert.deepEqual(calls.map((c) => c.ids), [["x"], ["y"]]);
  assert.match(warnings[0], /refused 1 ids \(deptcast.error.invalid_frame\): dropped/);
  assert.equal(warnings[1], `this node takes no receipts (deptcast.ack: ${refusal}): acknowledging is off`);
  acks.add(["z"], DELIVERED);
  await clock.advance(5000);
  assert.equal(calls.length, 2);
  assert.equal(acks.size, 0);
  assert.equal(warnings.length, 2, "said once");
}

test("a long time offline keeps the newest ACK_BACKLOG ids per state", async () => {
  const { acks, clock, calls } = queue(undefined, { backlog: 3, batch: 10 });
  acks.add(ids(1, 5), DELIVERED);
  acks.online(true);
  await clock.advance(0);
  assert.deepEqual(calls[0].ids, ids(3, 5));
});

test("seen: visible for a second without a break while the page is visible and focused", () => {
  const clock = new FakeClock(0);
  const rule = new SeenRule({ now: clock.now });
  rule.visible("a", true);
  clock.time = 5000;
  assert.deepEqual(rule.take(), [], "no attention: not seen however long");
  assert.equal(rule.nextDue(), null);
  rule.attention(true);
  clock.time = 5999;
  assert.deepEqual(rule.take(), []);
  assert.equal(rule.nextDue(), 1);
  clock.time = 6000;
  assert.deepEqual(rule.take(), ["a"]);
  assert.deepEqual(rule.take(), [], "each once");
  rule.visible("a", true); // scrolled back into view
  clock.time = 9000;
  assert.deepEqual(rule.take(), [], "already seen");
  assert.ok(rule.isSeen("a"));
});

test("seen: a break (scrolled away, tab hidden, focus lost) starts the second again", () => {
  const clock = new FakeClock(0);
  const rule = new SeenRule({ now: clock.now });
  rule.attention(true);
  rule.visible("b", true);
  rule.visible("c", true);
  clock.time = 600;
  rule.visible("b", false);
  rule.attention(false);
  clock.time = 700;
  rule.visible("b", true);
  rule.attention(true);
  clock.time = 1600;
  assert.deepEqual(rule.take(), []);
  assert.equal(rule.nextDue(), 100);
  clock.time = 1700;
  assert.deepEqual(rule.take().sort(), ["b", "c"]);
  rule.visible("d", true);
  rule.forget("d");
  clock.time = 5000;
  assert.deepEqual(rule.take(), [], "a notice removed from the page");
});

test("counts: an answer behind a newer event is not taken; receipts only grow", () => {
  const c = (seen, delivered, pending, audience = 20) => ({ id: "n1", audience, seen, delivered, pending });
  assert.deepEqual(mergeCounts(null, c(1, 2, 17)), c(1, 2, 17));
  assert.deepEqual(mergeCounts(c(1, 2, 17), c(2, 1, 17)), c(2, 1, 17), "one delivered was seen");
  assert.deepEqual(mergeCounts(c(2, 1, 17), c(1, 2, 17)), c(2, 1, 17), "fewer seen: older");
  assert.deepEqual(mergeCounts(c(2, 1, 17), c(2, 0, 18)), c(2, 1, 17), "fewer reached: older");
  assert.deepEqual(mergeCounts(c(2, 1, 17), c(2, 1, 18, 21)), c(2, 1, 18, 21), "the roster grew");
  assert.deepEqual(mergeCounts(c(1, 0, 0), { ...c(5, 0, 0), id: "n2" }), c(1, 0, 0), "another notice");
  assert.deepEqual(mergeCounts(c(1, 0, 0), { id: "n1", seen: -1 }), c(1, 0, 0), "malformed");
});

test("the line under a sent notice", () => {
  assert.equal(receiptSummary({ id: "n", audience: 20, seen: 12, delivered: 6, pending: 2 }),
    "seen by 12 of 20 · delivered to 18");
  assert.equal(receiptSummary({ id: "n", audience: 1, seen: 0, delivered: 0, pending: 1 }),
    "seen by 0 of 1 · delivered to 0");
  assert.equal(receiptSummary({ id: "n", audience: 0, seen: 0, delivered: 0, pending: 0 }), "nobody to receive it yet");
  assert.equal(receiptSummary(null), "");
});

test("the throttle: at once if quiet, else once at the end of the interval with the newest update", async () => {
  const clock = new FakeClock(0);
  const throttle = new Throttle({ intervalMs: 500, now: clock.now, schedule: clock.schedule, cancel: clock.cancel });
  const runs = [];
  throttle.run("n1", () => runs.push(["n1", 1, clock.time]));
  throttle.run("n1", () => runs.push(["n1", 2, clock.time]));
  throttle.run("n1", () => runs.push(["n1", 3, clock.time]));
  throttle.run("n2", () => runs.push(["n2", 1, clock.time]));
  await clock.advance(499);
  assert.deepEqual(runs, [["n1", 1, 0], ["n2", 1, 0]], "per key");
  await clock.advance(1);
  assert.deepEqual(runs.at(-1), ["n1", 3, 500], "the newest, once");
  assert.equal(runs.length, 3);
  await clock.advance(1000);
  throttle.run("n1", () => runs.push(["n1", 4, clock.time]));
  assert.deepEqual(runs.at(-1), ["n1", 4, 1500]);
  throttle.run("n1", () => runs.push(["n1", 5, clock.time]));
  throttle.clear();
  await clock.advance(1000);
  assert.equal(runs.length, 4, "cleared: the pending update is dropped");
  await settle();
});
