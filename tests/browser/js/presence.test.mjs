// web/presence.js: the Online list from deptcast.presence.online and the presence events.

import assert from "node:assert/strict";
import { test } from "node:test";

import { OnlineList } from "../../../web/presence.js";

const ev = (user, online, count, dept = "d") => ({ dept, user, online, count });

test("events before the first answer are ignored; after it they change the list", () => {
  const list = new OnlineList("d");
  assert.equal(list.sorted(), null);
  assert.equal(list.apply(ev("bob", true, 1)), "ignored", "the answer will hold it");
  assert.equal(list.replace({ dept: "d", count: 2, users: ["zed", "amy", 7] }), true);
  assert.deepEqual(list.sorted(), ["amy", "zed"]);
  assert.equal(list.apply(ev("bob", true, 3)), "changed");
  assert.equal(list.apply(ev("zed", false, 2)), "changed");
  assert.equal(list.apply(ev("bob", true, 2)), "changed", "already there: the count agrees");
  assert.deepEqual(list.sorted(), ["amy", "bob"]);
});

test("an event whose count disagrees with the list asks for the list again", () => {
  const list = new OnlineList("d");
  list.replace({ users: ["amy"] });
  assert.equal(list.apply(ev("bob", true, 3)), "resync", "a change this list never heard of");
  assert.equal(list.apply(ev("cid", true)), "changed", "no count: nothing to check");
});

test("other departments' events and malformed ones are ignored; reset forgets the list", () => {
  const list = new OnlineList("d");
  assert.equal(list.replace(null), false);
  assert.equal(list.replace({ users: "amy" }), false);
  list.replace({ users: [] });
  for (const bad of [ev("x", true, 1, "other"), { dept: "d", user: 5, online: true }, { dept: "d", user: "x", online: "yes" }, null]) {
    assert.equal(list.apply(bad), "ignored", JSON.stringify(bad));
  }
  assert.deepEqual(list.sorted(), []);
  list.reset();
  assert.equal(list.apply(ev("x", true, 1)), "ignored");
});
