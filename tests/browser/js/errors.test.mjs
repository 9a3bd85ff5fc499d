// web/errors.js: how a failure is read, and why a client stops for good.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED, CONNECTION_LOST, DeptcastError, INVALID_TOKEN, NOT_CONNECTED, RATE_LIMITED,
  NO_SUCH_PROCEDURE, ROUTER_NOT_AUTHORIZED, TIMEOUT, TOKEN_EXPIRED, UNAVAILABLE, asDeptcastError, endReason, errorUri,
  notOffered, retryable,
} from "../../../web/errors.js";

test("an autobahn error keeps its URI, text and kwargs; anything else is a lost connection", () => {
  const err = asDeptcastError({ error: RATE_LIMITED, args: ["slow down"], kwargs: { retry_after: 2 } });
  assert.ok(err instanceof DeptcastError && err instanceof Error);
  assert.deepEqual([err.uri, err.detail, err.kwargs, err.message], [RATE_LIMITED, "slow down", { retry_after: 2 },
    "slow down (deptcast.error.rate_limited)"]);
  assert.equal(errorUri(err), RATE_LIMITED, "read like autobahn's errors");
  assert.equal(asDeptcastError(err), err);
  const other = asDeptcastError("session not open"); // what autobahn-js throws on a closed session
  assert.deepEqual([other.uri, other.detail], [CONNECTION_LOST, "session not open"]);
  assert.equal(errorUri(null), null);
});

test("what may be tried again: a busy node, or an outcome that is unknown", () => {
  for (const uri of [UNAVAILABLE, RATE_LIMITED, CONNECTION_LOST, NOT_CONNECTED, TIMEOUT]) assert.ok(retryable(uri), uri);
  for (const uri of [INVALID_TOKEN, "deptcast.error.not_authorized", "deptcast.error.invalid_frame", null]) {
    assert.ok(!retryable(uri), String(uri));
  }
});

test("why a client stops: revoked (a GOODBYE, or a token refused as revoked), expired, or refused", () => {
  assert.equal(endReason(CLOSE_REVOKED), "revoked");
  assert.equal(endReason(INVALID_TOKEN, "revoked"), "revoked");
  assert.equal(endReason(INVALID_TOKEN, "token revoked at 2026-01-01"), "revoked");
  assert.equal(endReason(INVALID_TOKEN, "bad signature"), "refused");
  assert.equal(endReason(INVALID_TOKEN, "unrevoked"), "refused", "a word, not a substring");
  assert.equal(endReason(CLOSE_TOKEN_EXPIRED), "expired");
  assert.equal(endReason(TOKEN_EXPIRED), "expired");
  assert.equal(endReason("wamp.error.no_such_realm"), "refused");
});

test("a procedure the node does not offer: no callee, or the router refuses it to the role", () => {
  assert.ok(notOffered(NO_SUCH_PROCEDURE));
  assert.ok(notOffered(ROUTER_NOT_AUTHORIZED));
  assert.ok(!notOffered("deptcast.error.not_authorized"), "the node's own refusal is about the call");
  assert.ok(!notOffered(UNAVAILABLE));
});
