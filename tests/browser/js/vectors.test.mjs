// The shared recovery vectors (tests/vectors/recovery.json) against web/catchup.js: every case
// must pass. The Python client's tests read the same file.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { GAP_GRACE_MS, Recovery } from "../../../web/catchup.js";

const vectors = JSON.parse(readFileSync(new URL("../../vectors/recovery.json", import.meta.url), "utf8"));

/** Let the recovery run until it waits for something again. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

/** A history call as the vectors write it: its limit is the client's own business. */
function asWritten(kwargs) {
  return kwargs.latest === true ? { latest: true } : { positions: kwargs.positions };
}

/** A failed WAMP call, as autobahn-js rejects it (an autobahn.Error: error, args, kwargs). */
function wampError(step) {
  const kwargs = step.retry_after === undefined ? {} : { retry_after: step.retry_after };
  return { error: step.error, args: [`refused: ${step.error}`], kwargs };
}

/** A clock whose timers fire only when the test moves it on. */
class FakeClock {
  constructor() {
    this.now = 0;
    this.timers = new Map(); // handle -> {at, fn}
    this.next = 1;
  }

  schedule(fn, ms) {
    this.timers.set(this.next, { at: this.now + ms, fn });
    return this.next++;
  }

  cancel(handle) {
    this.timers.delete(handle);
  }

  /** Move on by ``ms``, firing the timers due by then in order (and those they set, if due). */
  async advance(ms) {
    const until = this.now + ms;
    for (;;) {
      const due = [...this.timers].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at);
      if (!due.length) break;
      const [handle, timer] = due[0];
      this.timers.delete(handle);
      this.now = timer.at;
      timer.fn();
      await settle();
    }
    this.now = until;
  }
}

/** Run one case's steps; return what the recovery asked and delivered. */
export async function play(topics, vector) {
  const requests = [];
  const delivered = [];
  const waiting = []; // unanswered history calls, oldest first
  const clock = new FakeClock();
  const recovery = new Recovery({
    topics,
    positions: vector.stored,
    deliver: (envelopes) => delivered.push(...envelopes.map((e) => e.id)),
    schedule: (fn, ms) => clock.schedule(fn, ms),
    cancel: (handle) => clock.cancel(handle),
  });
  const history = (kwargs) => {
    requests.push(asWritten(kwargs));
    return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
  };
  for (const [i, step] of vector.steps.entries()) {
    if (step.do === "join") {
      recovery.join(history).catch(() => {});
    } else if (step.do === "event") {
      assert.equal(recovery.receive(step.envelope), true, "an event on one of the topics");
    } else if (step.do === "answer") {
      assert.ok(waiting.length, `an answer, but no history call is waiting (asked: ${JSON.stringify(requests)})`);
      const call = waiting.shift();
      if (step.error) call.reject(wampError(step));
      else call.resolve(step.envelopes);
    } else if (step.do === "grace") {
      await clock.advance(GAP_GRACE_MS);
    } else if (step.do === "wait") {
      await clock.advance(step.seconds * 1000);
    } else if (step.do === "disconnect") {
      recovery.disconnect();
      for (const call of waiting.splice(0)) call.reject(new Error("connection lost"));
    } else {
      throw new Error(`unknown step ${JSON.stringify(step)}`);
    }
    await settle();
    if (step.asked !== undefined) assert.equal(requests.length, step.asked, `history calls after step ${i}`);
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
