// web/catchup.js beyond the shared vectors: what only the browser's wiring relies on.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  HISTORY_PAGE, PRUNED, RATE_LIMITED, RATE_LIMIT_WAIT_MS, Recovery, positionsFromEnvelopes, rateLimitWait,
} from "../../../web/catchup.js";

const D = "deptcast.dept.d";
const A = "deptcast.all";
const U = "deptcast.user.d_u";
const TOPICS = [D, A, U];
const id = (n) => String(n).padStart(16, "0");
const env = (n, scope, target, seq) => ({
  id: id(n), scope, target, sender: "s", sender_dept: "d", message: `m${n}`, ts: 0,
  ...(seq === undefined ? {} : { seq }),
});
const d = (n, seq) => env(n, "dept", "d", seq);
const all = (n, seq) => env(n, "all", "All", seq);
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A recovery with fake timers; history answers come from ``answers`` (arrays, or errors). */
function harness(positions, answers = []) {
  const log = { delivered: [], calls: [], busy: [], warnings: [], pruned: [], timers: new Map() };
  let next = 1;
  const recovery = new Recovery({
    topics: TOPICS,
    positions,
    deliver: (envs) => log.delivered.push(...envs.map((e) => e.id)),
    schedule: (fn, ms) => {
      log.timers.set(next, { fn, ms });
      return next++;
    },
    cancel: (h) => log.timers.delete(h),
    busy: (b) => log.busy.push(b),
    warn: (text) => log.warnings.push(text),
    onPruned: (reason) => log.pruned.push(reason),
  });
  const history = async (kwargs) => {
    log.calls.push(kwargs);
    const answer = typeof answers === "function" ? answers(kwargs) : answers.shift();
    if (answer instanceof Error || (answer && answer.error)) throw answer;
    return answer || [];
  };
  const fire = () => {
    const due = [...log.timers.values()];
    log.timers.clear();
    for (const t of due) t.fn();
  };
  return { recovery, history, log, fire };
}

test("a first visit asks the newest page with the page size, and positions after it", async () => {
  const { recovery, history, log } = harness(null, [[d(1, 1)], [], []]);
  assert.equal(recovery.positions(), null, "nothing known before the first join");
  assert.equal(await recovery.join(history), true);
  assert.deepEqual(log.calls, [
    { latest: true, limit: HISTORY_PAGE },
    { positions: { [D]: 1, [A]: 0, [U]: 0 }, limit: HISTORY_PAGE },
  ]);
  assert.deepEqual(recovery.positions(), { [D]: 1, [A]: 0, [U]: 0 });
  assert.deepEqual(log.busy, [true, false], "busy once for the whole catch-up");
});

test("subscribing happens inside the join: an event that arrives then is held until caught up", async () => {
  const { recovery, history, log } = harness({ [D]: 4 }, [[d(10, 5)], []]);
  await recovery.join(history, async () => {
    recovery.receive(d(11, 6)); // arrives as soon as the subscription is made
    assert.deepEqual(log.delivered, [], "held during the join");
  });
  assert.deepEqual(log.delivered, [id(10), id(11)]);
  assert.deepEqual(recovery.positions(), { [D]: 6, [A]: 0, [U]: 0 }, "a stored topic missing: 0");
});

test("a failed history call rejects the join; a first visit stays a first visit", async () => {
  const failure = Object.assign(new Error("unavailable"), { error: "deptcast.error.unavailable" });
  const { recovery, history, log } = harness(null, [failure, [d(3, 2)], []]);
  await assert.rejects(recovery.join(history), failure);
  assert.deepEqual(log.busy, [true, false]);
  recovery.disconnect();
  assert.equal(await recovery.join(history), true);
  assert.deepEqual(log.calls.map((c) => Object.keys(c)[0]), ["latest", "latest", "positions"]);
  assert.deepEqual(log.delivered, [id(3)]);
});

test("a failed gap read is tried again after the retry delay, and then fills the gap", async () => {
  const failure = new Error("unavailable");
  const { recovery, history, log, fire } = harness({ [D]: 4, [A]: 0, [U]: 0 }, [[], failure, [d(10, 5)], []]);
  await recovery.join(history);
  recovery.receive(d(11, 6));
  assert.equal(recovery.hasGaps, true);
  assert.deepEqual([...log.timers.values()].map((t) => t.ms), [1000], "the grace period");
  fire();
  await settle();
  assert.match(log.warnings[0], /reading missed events failed/);
  assert.deepEqual([...log.timers.values()].map((t) => t.ms), [5000], "the retry delay");
  fire();
  await settle();
  assert.deepEqual(log.delivered, [id(10), id(11)]);
  assert.equal(recovery.hasGaps, false);
  assert.deepEqual(log.busy, [true, false, true, false, true, false]);
});

test("an envelope on another topic is not the recovery's: receive says so and delivers nothing", async () => {
  const { recovery, history, log } = harness({ [D]: 0, [A]: 0, [U]: 0 });
  await recovery.join(history);
  assert.equal(recovery.receive(env(5, "dept", "other", 1)), false);
  assert.equal(recovery.receive(env(6, "user", "d_someone", 1)), false);
  assert.equal(recovery.receive({ id: 7 }), false);
  assert.equal(recovery.receive(all(8, 1)), true);
  assert.deepEqual(log.delivered, [id(8)]);
});

test("an answer that moves no position stops the paging with a warning", async () => {
  const { recovery, history, log } = harness({ [D]: 5 }, [[d(3, 2)]]);
  assert.equal(await recovery.join(history), true);
  assert.equal(log.calls.length, 1);
  assert.match(log.warnings[0], /past no position/);
});

test("stored positions are taken only for the recovery's topics and when whole numbers", () => {
  const { recovery } = harness({ [D]: 3, [A]: -1, [U]: 1.5, "deptcast.dept.x": 9 });
  assert.deepEqual(recovery.positions(), { [D]: 3, [A]: 0, [U]: 0 });
});

test("a disconnect during a join ends the busy state and the late answer is dropped", async () => {
  const { recovery, log } = harness({ [D]: 0 });
  let answer;
  const joined = recovery.join(() => new Promise((resolve) => { answer = resolve; }));
  await settle();
  recovery.disconnect();
  answer([d(1, 1)]);
  assert.equal(await joined, false);
  assert.deepEqual(log.delivered, []);
  assert.deepEqual(log.busy, [true, false]);
});

test("positions for a cache without them: the unbroken run from each topic's oldest cached seq", () => {
  const cached = [d(1, 3), d(2, 4), d(5, 7), all(3, 10), all(4, 11), env(6, "user", "d_u"), d(7)];
  assert.deepEqual(positionsFromEnvelopes(cached, TOPICS), { [D]: 4, [A]: 11, [U]: 0 });
  assert.equal(positionsFromEnvelopes([d(1)], TOPICS), null, "no seq at all: nothing to resume from");
  assert.equal(positionsFromEnvelopes([], TOPICS), null);
});

/** A refusal as autobahn-js rejects a call with it. */
const refusal = (uri, reason = "refused", kwargs = {}) => ({ error: uri, args: [reason], kwargs });

test("the wait after rate_limited: the error's retry_after, else 1 s, at most a minute", () => {
  assert.equal(RATE_LIMIT_WAIT_MS, 1000);
  assert.equal(rateLimitWait(refusal(RATE_LIMITED)), 1000);
  assert.equal(rateLimitWait(refusal(RATE_LIMITED, "", { retry_after: 2.5 })), 2500);
  assert.equal(rateLimitWait(refusal(RATE_LIMITED, "", { retry_after: 3600 })), 60000);
  for (const bad of [0, -1, "2", null, Number.NaN, true]) {
    assert.equal(rateLimitWait(refusal(RATE_LIMITED, "", { retry_after: bad })), 1000, String(bad));
  }
  assert.equal(rateLimitWait(new Error("no kwargs")), 1000);
});

test("rate_limited during a join is waited out on the same connection; the join resolves caught up", async () => {
  const limited = refusal(RATE_LIMITED, "slow down", { retry_after: 2 });
  const { recovery, history, log, fire } = harness({ [D]: 1, [A]: 0, [U]: 0 }, [limited, [d(5, 2)], []]);
  const joined = recovery.join(history);
  await settle();
  assert.deepEqual([...log.timers.values()].map((t) => t.ms), [2000], "the retry_after");
  assert.equal(log.calls.length, 1, "nothing asked before the wait is over");
  fire();
  assert.equal(await joined, true);
  assert.deepEqual(log.calls.map((c) => c.positions[D]), [1, 1, 2], "the same request again, then on");
  assert.deepEqual(log.delivered, [id(5)]);
  assert.equal(recovery.rateLimitedCount, 1);
  assert.deepEqual(log.busy, [true, false]);
});

test("a connection lost while waiting out rate_limited abandons the join", async () => {
  const { recovery, history, log, fire } = harness({ [D]: 1 }, [refusal(RATE_LIMITED), [d(5, 2)]]);
  const joined = recovery.join(history);
  await settle();
  recovery.disconnect();
  fire();
  assert.equal(await joined, false);
  assert.equal(log.calls.length, 1, "not asked again on a connection that is gone");
  assert.deepEqual(log.delivered, []);
});

test("pruned: the page is told the node's reason, counts it, and resumes from the newest page", async () => {
  const reason = "the messages after your position were removed by this service's retention";
  const { recovery, history, log } = harness({ [D]: 2, [A]: 0, [U]: 0 },
    [refusal(PRUNED, reason), [d(8, 7), d(9, 8)], []]);
  assert.equal(await recovery.join(history), true);
  assert.deepEqual(log.pruned, [reason]);
  assert.equal(recovery.prunedCount, 1);
  assert.deepEqual(log.calls, [
    { positions: { [D]: 2, [A]: 0, [U]: 0 }, limit: HISTORY_PAGE },
    { latest: true, limit: HISTORY_PAGE },
    { positions: { [D]: 8, [A]: 0, [U]: 0 }, limit: HISTORY_PAGE },
  ]);
  assert.deepEqual(log.delivered, [id(8), id(9)]);
});

test("a topic searched past retention is probed with limit 1", async () => {
  // the user topic: removed up to seq 5 (positions 0..4 refused), nothing else anywhere
  const answers = (kwargs) => {
    if (kwargs.latest) return [];
    const { positions } = kwargs;
    if (U in positions && positions[U] < 5) return refusal(PRUNED);
    return [];
  };
  const { recovery, history, log } = harness({ [D]: 0, [A]: 0, [U]: 1 }, answers);
  assert.equal(await recovery.join(history), true);
  const probes = log.calls.filter((c) => Object.keys(c.positions || {}).length === 1);
  assert.deepEqual(probes.map((c) => [Object.keys(c.positions)[0], c.positions[Object.keys(c.positions)[0]], c.limit]),
    [[D, 0, 1], [A, 0, 1], [U, 1, 1], [U, 2, 1], [U, 4, 1], [U, 8, 1], [U, 6, 1], [U, 5, 1]]);
  assert.deepEqual(recovery.positions(), { [D]: 0, [A]: 0, [U]: 5 });
  assert.match(log.warnings.at(-1), /deptcast\.user\.d_u: seq 2\.\.5 are no longer kept/);
});

test("a node that refuses every position as pruned fails the join instead of asking for ever", async () => {
  const answers = (kwargs) => (kwargs.latest ? [] : refusal(PRUNED));
  const { recovery, history, log } = harness({ [D]: 3, [A]: 0, [U]: 0 }, answers);
  await assert.rejects(recovery.join(history));
  assert.ok(log.calls.length < 200, `${log.calls.length} calls`);
  assert.deepEqual(log.busy, [true, false]);
});

test("a busy department: the read ends once history reaches the events held since subscribing", async () => {
  // every history answer brings one more notice, published live while the call is under way:
  // an empty answer never comes for the department
  const stored = [d(1, 1), d(2, 2), d(3, 3)];
  let recovery;
  let n = 3;
  const { recovery: r, history, log } = harness({ [D]: 0, [A]: 0, [U]: 0 }, (kwargs) => {
    if (n < 200) { // bounds the read that never ends (without the rule, it would not)
      n += 1;
      stored.push(d(n, n));
      recovery.receive(d(n, n));
    }
    const from = kwargs.positions[D];
    return from === undefined ? [] : stored.filter((e) => e.seq > from).slice(0, 2);
  });
  recovery = r;
  assert.equal(await recovery.join(history), true);
  assert.ok(log.calls.length <= 4, JSON.stringify(log.calls));
  assert.deepEqual(log.calls.at(-1).positions, { [A]: 0, [U]: 0 }, "the department is not asked again");
  assert.deepEqual(log.delivered, stored.map((e) => e.id), "everything once, in order");
  assert.equal(recovery.hasGaps, false);
  recovery.receive(d(n + 1, n + 1));
  assert.equal(log.delivered.at(-1), id(n + 1));
});
