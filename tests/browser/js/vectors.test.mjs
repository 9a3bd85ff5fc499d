// The shared recovery vectors (tests/vectors/recovery.json) against web/catchup.js: every case
// must pass. The Python client's tests read the same file.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { Recovery } from "../../../web/catchup.js";

const vectors = JSON.parse(readFileSync(new URL("../../vectors/recovery.json", import.meta.url), "utf8"));

/** Let the recovery run until it waits for something again. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A history call as the vectors write it: its limit is the client's own business. */
function asWritten(kwargs) {
  return kwargs.latest === true ? { latest: true } : { positions: kwargs.positions };
}

/** Run one case's steps; return what the recovery asked and delivered. */
export async function play(topics, vector) {
  const requests = [];
  const delivered = [];
  const waiting = []; // unanswered history calls, oldest first
  const timers = new Map();
  let nextTimer = 1;
  const recovery = new Recovery({
    topics,
    positions: vector.stored,
    deliver: (envelopes) => delivered.push(...envelopes.map((e) => e.id)),
    schedule: (fn) => {
      timers.set(nextTimer, fn);
      return nextTimer++;
    },
    cancel: (handle) => timers.delete(handle),
  });
  const history = (kwargs) => {
    requests.push(asWritten(kwargs));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  for (const step of vector.steps) {
    if (step.do === "join") {
      recovery.join(history).catch(() => {});
    } else if (step.do === "event") {
      assert.equal(recovery.receive(step.envelope), true, "an event on one of the topics");
    } else if (step.do === "answer") {
      assert.ok(waiting.length, `an answer, but no history call is waiting (asked: ${JSON.stringify(requests)})`);
      waiting.shift().resolve(step.envelopes);
    } else if (step.do === "grace") {
      const due = [...timers.values()];
      timers.clear();
      for (const fn of due) fn();
    } else if (step.do === "disconnect") {
      recovery.disconnect();
      for (const call of waiting.splice(0)) call.reject(new Error("connection lost"));
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
    await settle();
  }
  return { requests, delivered, positions: recovery.positions(), unanswered: waiting.length };
}

test("the vectors file describes itself and has cases", () => {
  assert.ok(Array.isArray(vectors.description) && vectors.description.length > 0);
  assert.deepEqual(vectors.topics, ["deptcast.dept.cardio", "deptcast.all", "deptcast.user.cardio_alice"]);
  assert.ok(vectors.cases.length >= 10);
  assert.equal(new Set(vectors.cases.map((c) => c.name)).size, vectors.cases.length, "names are unique");
});

for (const vector of vectors.cases) {
  test(`vector: ${vector.name}`, async () => {
    const got = await play(vectors.topics, vector);
    assert.deepEqual(got.requests, vector.requests, "history calls");
    assert.deepEqual(got.delivered, vector.delivered, "delivered ids, in order");
    assert.deepEqual(got.positions, vector.positions, "positions after the last step");
    assert.equal(got.unanswered, 0, "no history call left unanswered");
  });
}
