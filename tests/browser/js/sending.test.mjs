// web/sending.js: one key per notice, reused on every retry; what is retried and how long
// the client waits between attempts.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CONNECTION_LOST, DeptcastError, INVALID_FRAME, NOT_AUTHORIZED, RATE_LIMITED, TIMEOUT, TOO_LARGE, UNAVAILABLE,
} from "../../../web/errors.js";
import { KEY_PATTERN, SEND_ATTEMPTS, isKey, newKey, sendRetryDelay, sendWithRetries } from "../../../web/sending.js";

test("keys: 1 to 64 letters, digits, '-', '_' or '.'; a new one is a random UUID", () => {
  for (const good of ["a", "A-z_0.9", "x".repeat(64), "550e8400-e29b-41d4-a716-446655440000"]) assert.ok(isKey(good), good);
  for (const bad of ["", "x".repeat(65), "a b", "ä", "a/b", null, 5]) assert.ok(!isKey(bad), String(bad));
  const keys = new Set(Array.from({ length: 100 }, () => newKey()));
  assert.equal(keys.size, 100);
  for (const key of keys) assert.match(key, KEY_PATTERN);
  // a browser without randomUUID: 32 hex digits from getRandomValues
  const old = { getRandomValues: (bytes) => bytes.fill(171) };
  assert.equal(newKey(old), "ab".repeat(16));
});

test("the back-off doubles from 1 s to 15 s, a quarter either way; a rate limit says its own wait", () => {
  const calm = (n) => sendRetryDelay(n, new DeptcastError(UNAVAILABLE), () => 0.5);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(calm), [1000, 2000, 4000, 8000, 15000, 15000]);
  assert.equal(sendRetryDelay(1, new DeptcastError(UNAVAILABLE), () => 0), 750);
  assert.equal(sendRetryDelay(1, new DeptcastError(UNAVAILABLE), () => 1), 1250);
  assert.equal(sendRetryDelay(1, new DeptcastError(RATE_LIMITED, "", { retry_after: 2.5 })), 2500);
  assert.equal(sendRetryDelay(4, new DeptcastError(RATE_LIMITED)), 1000);
});

/** Attempts answered in turn by ``outcomes`` (an error to throw, or an envelope). */
function attempts(outcomes) {
  const keys = [];
  return {
    keys,
    attempt: async (key) => {
      keys.push(key);
      const outcome = outcomes.shift();
      if (outcome instanceof Error || (outcome && outcome.error)) throw outcome;
      return outcome;
    },
  };
}

test("unavailable, a lost connection, no answer, rate_limited: retried with the same key until sent", async () => {
  const env = { id: "1", scope: "dept", message: "m" };
  const autobahnError = { error: UNAVAILABLE, args: ["the store is down"], kwargs: {} }; // as autobahn-js rejects
  const { keys, attempt } = attempts([autobahnError, new DeptcastError(CONNECTION_LOST),
    new DeptcastError(TIMEOUT), new DeptcastError(RATE_LIMITED, "slow down", { retry_after: 3 }), env]);
  const statuses = [];
  const waits = [];
  const sent = await sendWithRetries({
    attempt, key: "k-1", sleep: async (ms) => waits.push(ms), onStatus: (s) => statuses.push(s), random: () => 0.5,
  });
  assert.equal(sent, env);
  assert.deepEqual(keys, ["k-1", "k-1", "k-1", "k-1", "k-1"]);
  assert.deepEqual(waits, [1000, 2000, 4000, 3000]);
  assert.deepEqual(statuses.map((s) => s.state), ["sending", "retrying", "sending", "retrying", "sending", "retrying",
    "sending", "retrying", "sending", "sent"]);
  assert.equal(statuses[1].error.uri, UNAVAILABLE);
  assert.equal(statuses[1].error.detail, "the store is down");
  assert.deepEqual(statuses[1].retryIn, 1000);
});

test("a refusal is not retried: the notice has failed at once", async () => {
  for (const uri of [NOT_AUTHORIZED, INVALID_FRAME, TOO_LARGE]) {
    const { keys, attempt } = attempts([{ error: uri, args: ["no"], kwargs: {} }]);
    const statuses = [];
    await assert.rejects(
      sendWithRetries({ attempt, key: "k", sleep: async () => {}, onStatus: (s) => statuses.push(s.state) }),
      (err) => err instanceof DeptcastError && err.uri === uri && err.detail === "no",
    );
    assert.deepEqual(keys, ["k"]);
    assert.deepEqual(statuses, ["sending", "failed"]);
  }
});

test("after the last attempt the notice has failed with the last error", async () => {
  const { keys, attempt } = attempts(Array.from({ length: 10 }, () => new DeptcastError(UNAVAILABLE)));
  await assert.rejects(sendWithRetries({ attempt, key: "k", sleep: async () => {} }), { uri: UNAVAILABLE });
  assert.equal(keys.length, SEND_ATTEMPTS);
});
