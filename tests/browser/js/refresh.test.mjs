// web/refresh.js: when a token is renewed, and what each answer of deptcast.session.refresh
// leads to, against a fake clock, a fake token source and a fake session.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  INVALID_TOKEN, NO_SUCH_PROCEDURE, NOT_AUTHORIZED, ROUTER_NOT_AUTHORIZED, UNAVAILABLE,
} from "../../../web/errors.js";
import { TokenKeeper, compareTokens, refreshAt, retryBeforeExpiry } from "../../../web/refresh.js";
import { FakeClock, jwt, settle } from "./fakes.mjs";

const S = 1000;
const tok = (iat, ttl, extra = {}) => jwt({ sub: "ann", dept: "cardio", role: "member", iat, exp: iat + ttl, ...extra });
const refusal = (uri) => ({ error: uri, args: [`refused: ${uri}`], kwargs: {} });

test("renewed at 80% of the lifetime or 60 s before exp, whichever is sooner, never before half", () => {
  const at = (iat, ttl, random = 0) => refreshAt({ iat, exp: iat + ttl }, 0, () => random) / S;
  assert.equal(at(0, 3600), 2880, "an hour: at 48 min (80%)");
  assert.equal(at(0, 300), 240, "5 min: 80% and 60 s before agree");
  assert.equal(at(0, 240), 180, "4 min: 60 s before exp is sooner than 80%");
  assert.equal(at(0, 90), 45, "90 s: 60 s before would be at 30 s, before half the lifetime");
  assert.equal(at(100, 3), 101.5, "3 s: at half");
  // jitter: up to a tenth of the lifetime earlier
  assert.equal(at(0, 3600, 1), 2880 - 360);
  assert.equal(at(0, 3600, 0.5), 2880 - 180);
});

test("without iat the lifetime starts when the client got the token; no exp: no plan", () => {
  assert.equal(refreshAt({ exp: 3600 }, 600 * S, () => 0), (600 + 0.8 * 3000) * S);
  assert.equal(refreshAt({ exp: 3600, iat: 4000 }, 0, () => 0), 0.8 * 3600 * S, "an iat after exp is no use");
  assert.equal(refreshAt({}, 5, () => 0), null);
  assert.equal(refreshAt({ exp: 10 }, 20 * S, () => 0), 20 * S, "already expired: now");
});

test("asked again at a quarter of what is left, between 250 ms and 30 s, until exp", () => {
  assert.equal(retryBeforeExpiry(1000, 0), 30000);
  assert.equal(retryBeforeExpiry(40, 0), 10000);
  assert.equal(retryBeforeExpiry(1, 0), 250);
  assert.equal(retryBeforeExpiry(1, 750), null, "250 ms left: too late");
  assert.equal(retryBeforeExpiry(1, 1000), null);
  assert.equal(retryBeforeExpiry(undefined, 0), null);
});

test("a candidate token is newer, of another role or identity, stale or invalid", () => {
  const held = tok(0, 60);
  assert.equal(compareTokens(held, tok(10, 60)), "newer");
  assert.equal(compareTokens(held, tok(0, 60)), "stale");
  assert.equal(compareTokens(held, tok(0, 30)), "stale");
  assert.equal(compareTokens(held, tok(0, 60, { role: "publisher" })), "role");
  assert.equal(compareTokens(held, tok(0, 60, { sub: "bob" })), "identity");
  assert.equal(compareTokens(held, tok(0, 60, { dept: "onco" })), "identity");
  assert.equal(compareTokens(held, "not.a.token"), "invalid");
});

/** A keeper with a fake clock; ``answers`` are what deptcast.session.refresh does, in turn. */
function harness({ token = tok(0, 3600), source = null, answers = [], start = 0 } = {}) {
  const clock = new FakeClock(start);
  const log = { refreshed: [], reconnects: 0, calls: [], asked: [], warnings: [] };
  const keeper = new TokenKeeper({
    token,
    source: source && (async (info) => {
      log.asked.push({ at: clock.time, ...info });
      return source(info, clock);
    }),
    refresh: async (newer) => {
      log.calls.push(newer);
      const answer = typeof answers === "function" ? answers(newer, clock) : answers.shift();
      if (answer && answer.error) throw answer;
      return answer;
    },
    reconnect: () => { log.reconnects += 1; },
    onRefreshed: (info) => log.refreshed.push(info),
    warn: (text) => log.warnings.push(text),
    now: clock.now,
    schedule: clock.schedule,
    cancel: clock.cancel,
    random: () => 0,
  });
  return { keeper, clock, log };
}

test("ahead of exp the source is asked and the session takes the newer token: no reconnect", async () => {
  const first = tok(0, 3600);
  const second = tok(2880, 3600);
  const { keeper, clock, log } = harness({
    token: first, source: () => second, answers: [{ exp: 2880 + 3600 }],
  });
  keeper.joined(first);
  assert.deepEqual(clock.pending(), [2880 * S]);
  await clock.advance(2880 * S);
  assert.deepEqual(log.asked, [{ at: 2880 * S, user: "ann", dept: "cardio", role: "member", exp: 3600 }]);
  assert.deepEqual(log.calls, [second]);
  assert.deepEqual(log.refreshed, [{ exp: 6480 }]);
  assert.equal(keeper.inUse, second);
  assert.equal(keeper.current, second);
  assert.equal(log.reconnects, 0);
  assert.deepEqual(clock.pending(), [2880 * S], "the next renewal: 80% of the new token's life");
});

test("a 3 s token renewed 20 times: the session always holds a token that has not expired", async () => {
  let minted = 0;
  const mint = (info, clock) => {
    minted += 1;
    return tok(Math.floor(clock.time / S), 3);
  };
  const { keeper, clock, log } = harness({
    token: tok(0, 3), source: mint, answers: (token) => ({ exp: JSON.parse(Buffer.from(token.split(".")[1], "base64url")).exp }),
  });
  keeper.joined(keeper.current);
  let lapsed = 0;
  while (log.refreshed.length < 20) {
    await clock.advance(100);
    if (keeper.sessionExp * S <= clock.time) lapsed += 1;
    assert.ok(clock.time < 120 * S, "stuck");
  }
  assert.equal(lapsed, 0, "never past its session's exp");
  assert.equal(log.reconnects, 0);
  assert.equal(log.calls.length, 20);
  assert.ok(minted >= 20);
});

test("no token from the source: asked again while the token lasts, then no more", async () => {
  const { keeper, clock, log } = harness({ token: tok(0, 100), source: () => null });
  keeper.joined(keeper.current);
  await clock.advance(200 * S);
  const times = log.asked.map((a) => a.at / S);
  assert.equal(times[0], 50, "half of 100 s (60 s before exp would be sooner)");
  // a quarter of what is left each time, at least 250 ms, until exp
  assert.equal(times[1], 50 + 12.5);
  assert.ok(times.at(-1) < 100 && times.at(-1) > 99.5, String(times));
  assert.equal(log.calls.length, 0);
  assert.deepEqual(clock.pending(), []);
});

test("not_authorized (another identity or role for the node), or a node without the procedure: reconnect", async () => {
  // a node older than the client: no callee, or its router's authorizer refuses the unknown name
  for (const uri of [NOT_AUTHORIZED, NO_SUCH_PROCEDURE, ROUTER_NOT_AUTHORIZED]) {
    const newer = tok(100, 3600);
    const { keeper, clock, log } = harness({ source: () => newer, answers: [refusal(uri)] });
    keeper.joined(keeper.current);
    await clock.advance(2880 * S);
    assert.equal(log.reconnects, 1, uri);
    assert.equal(keeper.current, newer, "the next connection signs in with it");
    assert.deepEqual(log.refreshed, []);
    keeper.lost();
    keeper.joined(newer);
    assert.equal(log.calls.length, 1, "signed in with it: nothing to hand over");
  }
});

test("unavailable: the same token is handed over again shortly, without asking the source", async () => {
  const newer = tok(100, 3600);
  const { keeper, clock, log } = harness({
    source: () => newer, answers: [refusal(UNAVAILABLE), { error: "deptcast.client.connection_lost" }, { exp: 3700 }],
  });
  keeper.joined(keeper.current);
  await clock.advance(2880 * S);
  assert.deepEqual(clock.pending(), [30 * S]);
  await clock.advance(60 * S);
  assert.deepEqual(log.calls, [newer, newer, newer]);
  assert.equal(log.asked.length, 1);
  assert.deepEqual(log.refreshed, [{ exp: 3700 }]);
  assert.equal(log.reconnects, 0);
});

test("another refusal drops the newer token: the session keeps its own, the source is asked again", async () => {
  const held = tok(0, 3600);
  const bad = tok(100, 3600);
  const good = tok(3000, 3600);
  const tokens = [bad, good];
  const { keeper, clock, log } = harness({ token: held, source: () => tokens.shift(), answers: [refusal(INVALID_TOKEN), { exp: 6600 }] });
  keeper.joined(held);
  await clock.advance(2880 * S);
  assert.equal(keeper.current, held, "not signing in with a refused token");
  assert.match(log.warnings[0], /refused the newer token \(deptcast.error.invalid_token\)/);
  await clock.advance(30 * S);
  assert.deepEqual(log.calls, [bad, good]);
  assert.equal(keeper.inUse, good);
});

test("a token that comes after the session went serves the next connection; a late answer is dropped", async () => {
  let answer;
  const newer = tok(100, 3600);
  const { keeper, clock, log } = harness({ source: () => newer, answers: () => new Promise((r) => { answer = r; }) });
  keeper.joined(keeper.current);
  await clock.advance(2880 * S);
  assert.deepEqual(log.calls, [newer]);
  keeper.lost();
  answer({ exp: 3700 });
  await settle();
  assert.deepEqual(log.refreshed, [], "for a session that is gone");
  assert.equal(keeper.current, newer);
  assert.equal(keeper.hasNewerThan(tok(0, 3600)), true, "an expired session may come back with it");
  assert.equal(keeper.hasNewerThan(newer), false);
});

test("a token pushed by the application: newer is handed over, another role reconnects, another user is ignored", async () => {
  const { keeper, log } = harness({ answers: [{ exp: 7200 }] });
  const held = keeper.current;
  assert.equal(keeper.offer(tok(10, 3600)), "newer");
  assert.deepEqual(log.calls, [], "no session: kept for the next one");
  keeper.joined(held);
  await settle();
  assert.equal(log.calls.length, 1, "a newer token than the session's is handed over at its join");
  assert.equal(keeper.offer(tok(20, 3600, { role: "publisher" })), "role");
  assert.equal(log.reconnects, 1);
  assert.equal(keeper.offer(tok(30, 3600, { sub: "eve" })), "identity");
  assert.match(log.warnings.at(-1), /another user/);
  assert.equal(JSON.parse(Buffer.from(keeper.current.split(".")[1], "base64url")).role, "publisher");
});
