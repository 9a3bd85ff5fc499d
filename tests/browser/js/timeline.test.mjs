// web/timeline.js: merge rules, where an envelope belongs, and the per-user cache.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  KEEP, Timeline, cacheKey, compareIds, dropCache, isEnvelope, isPositions, loadCache, saveCache, seqOf, topicOf,
} from "../../../web/timeline.js";

const id = (n) => String(n).padStart(16, "0");
const env = (n, scope = "dept", target = "d", seq) => ({
  id: id(n), scope, target, sender: "s", sender_dept: "d", message: `m${n}`, ts: 0,
  ...(seq === undefined ? {} : { seq }),
});

/** localStorage's interface over a Map; ``full`` makes setItem throw as a full quota does. */
class MemoryStorage {
  constructor() {
    this.map = new Map();
    this.full = false;
  }
  getItem(k) {
    return this.map.has(k) ? this.map.get(k) : null;
  }
  setItem(k, v) {
    if (this.full) throw new Error("QuotaExceededError");
    this.map.set(k, String(v));
  }
  removeItem(k) {
    this.map.delete(k);
  }
}

test("merge keeps each id once, sorted, the newest KEEP, and says what changed", () => {
  const t = new Timeline(4);
  const a = t.merge([env(3), env(1)]);
  const b = t.merge([env(2), env(3), { id: 5 }]);
  const c = t.merge([env(4), env(5)]);
  assert.deepEqual(a.added.map((e) => e.id), [id(1), id(3)]);
  assert.deepEqual(b.added.map((e) => e.id), [id(2)], "a known id and a malformed one are skipped");
  assert.deepEqual(c.added.map((e) => e.id), [id(4), id(5)]);
  assert.deepEqual(c.dropped, [id(1)]);
  assert.deepEqual(t.ids, [id(2), id(3), id(4), id(5)]);
  assert.equal(t.lastId, id(5));
  assert.equal(t.nextId(id(3)), id(4));
  assert.equal(t.nextId(id(5)), null);
  assert.equal(t.nextId(id(0)), id(2), "an id not held: the next one after it");
  assert.equal(KEEP, 500);
});

test("an envelope older than everything kept is added and dropped at once, never reported", () => {
  const t = new Timeline(2);
  t.merge([env(5), env(6)]);
  const change = t.merge([env(1)]);
  assert.deepEqual(change, { added: [], dropped: [id(1)] });
  assert.deepEqual(t.list().map((e) => e.id), [id(5), id(6)]);
});

test("ids compare by length, then text", () => {
  assert.ok(compareIds(id(9), id(10)) < 0);
  assert.ok(compareIds("99", "100") < 0, "longer ids are later even without padding");
  assert.equal(compareIds(id(3), id(3)), 0);
  assert.equal(isEnvelope(env(1)), true);
  assert.equal(isEnvelope({ ...env(1), message: 5 }), false);
  assert.equal(isEnvelope(null), false);
});

test("each envelope's topic as the page subscribes to it, and its seq", () => {
  assert.equal(topicOf(env(1, "dept", "cardio")), "deptcast.dept.cardio");
  assert.equal(topicOf(env(1, "all", "All")), "deptcast.all");
  assert.equal(topicOf(env(1, "user", "cardio_alice")), "deptcast.user.cardio_alice");
  for (const target of ["nounderscore", "a_b_c", "_a", "a_", ""]) {
    assert.equal(topicOf(env(1, "user", target)), null, target);
  }
  assert.equal(topicOf(env(1, "elsewhere", "x")), null);
  assert.equal(topicOf({ id: 5 }), null);
  assert.deepEqual([1, 7, 0, -1, 1.5, "3", undefined].map((s) => seqOf(env(1, "dept", "d", s))),
    [1, 7, null, null, null, null, null]);
});

test("the cache keeps envelopes and positions per user", () => {
  const storage = new MemoryStorage();
  const t = new Timeline();
  t.merge([env(1, "dept", "d", 1), env(2, "dept", "d", 2)]);
  const positions = { "deptcast.dept.d": 2, "deptcast.all": 0 };
  assert.equal(saveCache(storage, "d", "u", t, positions), true);
  assert.deepEqual([...storage.map.keys()], ["deptcast:v2:timeline:d_u"]);
  assert.deepEqual(loadCache(storage, "d", "u"), { positions, envelopes: t.list(), legacy: false });
  assert.deepEqual(loadCache(storage, "e", "u"), { positions: null, envelopes: [], legacy: false },
    "another department's user u is another person");
  dropCache(storage, "d", "u");
  assert.equal(storage.map.size, 0);
});

test("a version 1 cache is read as legacy (no positions) and replaced by the next save", () => {
  const storage = new MemoryStorage();
  storage.setItem(cacheKey("d", "u", 1), JSON.stringify({ lastId: id(2), envelopes: [env(2), { junk: true }] }));
  assert.deepEqual(loadCache(storage, "d", "u"), { positions: null, envelopes: [env(2)], legacy: true });
  saveCache(storage, "d", "u", new Timeline(), { "deptcast.all": 0 });
  assert.deepEqual([...storage.map.keys()], [cacheKey("d", "u")]);
  storage.setItem(cacheKey("d", "u", 1), "{}");
  dropCache(storage, "d", "u");
  assert.equal(storage.map.size, 0, "dropping forgets every version");
});

test("an unreadable cache reads as empty; a full quota only loses the cache", () => {
  const storage = new MemoryStorage();
  storage.setItem(cacheKey("d", "u"), "{not json");
  assert.deepEqual(loadCache(storage, "d", "u"), { positions: null, envelopes: [], legacy: false });
  storage.setItem(cacheKey("d", "u"), JSON.stringify({ positions: { x: -1 }, envelopes: [env(1)] }));
  assert.deepEqual(loadCache(storage, "d", "u").positions, null, "bad positions are not trusted");
  storage.full = true;
  assert.equal(saveCache(storage, "d", "u", new Timeline(), {}), false);
  assert.equal(isPositions({ a: 0, b: 3 }), true);
  assert.equal(isPositions([1]), false);
  assert.equal(isPositions(null), false);
});
