// web/signin.js: where a token may come from, with stand-ins for window, document and storage.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  HostTokenRequests, beginSignIn, claimsOf, fragmentDecision, fragmentTokenAllowed, savedToken, saveToken, signInUrl,
  takeFragment, takeFragmentToken, takeSignInRequest, tellHost, tokenOrigins,
} from "../../../web/signin.js";
import { FakeClock, settle } from "./fakes.mjs";

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
const jwt = (claims) => `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}.signature`;

test("claims are read (not verified) from a JWT's payload, UTF-8 included", () => {
  assert.deepEqual(claimsOf(jwt({ sub: "u.1", dept: "d-2", role: "publisher", exp: 5 })),
    { sub: "u.1", dept: "d-2", role: "publisher", exp: 5 });
  assert.deepEqual(claimsOf(jwt({ sub: "u", dept: "d", exp: 9, iat: 3 })), { sub: "u", dept: "d", role: "member", exp: 9, iat: 3 },
    "iat when the token has it (refresh plans from it)");
  assert.equal(claimsOf(jwt({ sub: "zoë", dept: "d" })).sub, "zoë");
  assert.equal(claimsOf(jwt({ sub: "u", dept: "d" })).role, "member", "role defaults to member");
  for (const bad of ["x.y", "a.b.c", null, 5, jwt({ sub: "u" }), jwt({ sub: 1, dept: "d" }), `a.${b64url("str")}.c`]) {
    assert.equal(claimsOf(bad), null, String(bad));
  }
});

function fakeWindow(href, extra = {}) {
  const url = new URL(href);
  const win = {
    location: { hash: url.hash, pathname: url.pathname, search: url.search, origin: url.origin },
    replaced: [],
    ...extra,
  };
  win.history = { replaceState: (state, title, to) => win.replaced.push(to) };
  return win;
}

test("a fragment token is taken once and removed from the address, other fragment parts kept", () => {
  const win = fakeWindow("https://h/app/?q=1#token=abc&x=1");
  assert.equal(takeFragmentToken(win), "abc");
  assert.deepEqual(win.replaced, ["/app/?q=1#x=1"]);
  assert.equal(takeFragmentToken(fakeWindow("https://h/#x=1")), null);
  assert.equal(takeFragmentToken(fakeWindow("https://h/")), null);
  const only = fakeWindow("https://h/#token=t");
  takeFragmentToken(only);
  assert.deepEqual(only.replaced, ["/"]);
});

test("the allowed origins: the page's own and the meta tag's, without trailing slashes", () => {
  const doc = (content) => ({ querySelector: () => (content === null ? null : { content }) });
  assert.deepEqual([...tokenOrigins(doc(" https://a.example/  https://b.example:8443 "), "https://own")],
    ["https://own", "https://a.example", "https://b.example:8443"]);
  assert.deepEqual([...tokenOrigins(doc(null), "https://own")], ["https://own"]);
  assert.deepEqual([...tokenOrigins(doc(""), "https://own")], ["https://own"]);
});

test("a fragment token while signed in counts only if whoever can set the address is allowed", () => {
  const origins = new Set(["https://own", "https://host"]);
  const top = fakeWindow("https://own/");
  top.parent = top;
  assert.equal(fragmentTokenAllowed(origins, top), true, "a tab of its own: only the user sets it");
  const framed = (ancestors) => {
    const win = fakeWindow("https://own/");
    win.parent = {};
    win.location.ancestorOrigins = ancestors;
    return win;
  };
  assert.equal(fragmentTokenAllowed(origins, framed(["https://host"])), true);
  assert.equal(fragmentTokenAllowed(origins, framed(["https://host", "https://evil"])), false,
    "every ancestor can navigate the frame");
  assert.equal(fragmentTokenAllowed(origins, framed(["https://evil"])), false);
  assert.equal(fragmentTokenAllowed(origins, framed(undefined)), false, "unknown ancestors: refused");
  const opened = (opener) => {
    const win = fakeWindow("https://own/");
    win.parent = win;
    win.opener = opener;
    return win;
  };
  assert.equal(fragmentTokenAllowed(origins, opened({ location: { origin: "https://own" } })), true);
  const foreign = { location: {} };
  Object.defineProperty(foreign.location, "origin", { get() { throw new Error("SecurityError"); } });
  assert.equal(fragmentTokenAllowed(origins, opened(foreign)), false, "a cross-origin opener");
});

test("the host hears only allowed origins; in a frame only the embedding one", () => {
  const posted = [];
  const target = (name) => ({ postMessage: (message, origin) => posted.push([name, message.type, origin]) });
  const origins = new Set(["https://own", "https://host"]);
  const win = fakeWindow("https://own/");
  win.parent = target("parent");
  win.location.ancestorOrigins = ["https://host"];
  win.opener = target("opener");
  tellHost({ type: "deptcast.ready" }, origins, win);
  assert.deepEqual(posted, [["parent", "deptcast.ready", "https://host"],
    ["opener", "deptcast.ready", "https://own"], ["opener", "deptcast.ready", "https://host"]]);
  posted.length = 0;
  win.location.ancestorOrigins = ["https://evil"];
  win.opener = null;
  tellHost({ type: "deptcast.ready" }, origins, win);
  assert.deepEqual(posted, [], "an embedding origin not allowed hears nothing");
  const alone = fakeWindow("https://own/");
  alone.parent = alone;
  tellHost({ type: "deptcast.ready" }, origins, alone);
  assert.deepEqual(posted, []);
});

test("the token is kept in the tab's storage, and forgotten", () => {
  const map = new Map();
  const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v), removeItem: (k) => map.delete(k) };
  saveToken("t1", storage);
  assert.equal(savedToken(storage), "t1");
  saveToken(null, storage);
  assert.equal(savedToken(storage), null);
  const broken = { getItem() { throw new Error("disabled"); }, setItem() { throw new Error("disabled"); } };
  assert.equal(savedToken(broken), null);
  saveToken("t", broken); // no throw
});

test("the fragment's token and the state of a sign-in request are taken together and removed", () => {
  const win = fakeWindow("https://h/app/#token=abc&state=n1&x=1");
  assert.deepEqual(takeFragment(win), { token: "abc", state: "n1" });
  assert.deepEqual(win.replaced, ["/app/#x=1"]);
  assert.deepEqual(takeFragment(fakeWindow("https://h/#token=t")), { token: "t", state: null });
  assert.equal(takeFragment(fakeWindow("https://h/#state=n1")), null, "no token: the address is left alone");
});

/** A storage in memory, as sessionStorage. */
function memoryStorage() {
  const map = new Map();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, String(v)), removeItem: (k) => map.delete(k) };
}

test("login CSRF: a page not signed in uses a fragment token only if it asked for it, or its host set it", () => {
  const origins = new Set(["https://own", "https://host"]);
  const tab = fakeWindow("https://own/");
  tab.parent = tab;
  const decide = (signedIn, state, pending, win = tab) => fragmentDecision({ signedIn, state, pending, origins }, win);
  assert.equal(decide(false, null, null), "ask", "a link from anywhere: ask the user");
  assert.equal(decide(false, "n1", "n1"), "use", "this tab's own sign-in request came back");
  assert.equal(decide(false, "n1", "n2"), "ask", "someone else's request");
  assert.equal(decide(false, "n1", null), "ask");
  assert.equal(decide(false, null, "n1"), "ask", "a request pending, but the token does not answer it");
  const framed = (ancestors) => {
    const win = fakeWindow("https://own/");
    win.parent = {};
    win.location.ancestorOrigins = ancestors;
    return win;
  };
  assert.equal(decide(false, null, null, framed(["https://host"])), "use", "the allowed host that embeds it");
  assert.equal(decide(false, null, null, framed(["https://evil"])), "ask");
  const opened = (origin) => {
    const win = fakeWindow("https://own/");
    win.parent = win;
    win.opener = { location: { origin } };
    return win;
  };
  assert.equal(decide(false, null, null, opened("https://host")), "use");
  assert.equal(decide(false, null, null, opened("https://evil")), "ask");
  // signed in: the rule of the page that set the address (no asking)
  assert.equal(decide(true, null, null), "use", "a tab of its own: its user");
  assert.equal(decide(true, null, null, opened("https://evil")), "ignore");
});

test("a sign-in request: the issuer gets a nonce and the way back; the nonce serves once", () => {
  const storage = memoryStorage();
  const crypto = { getRandomValues: (bytes) => bytes.fill(1) };
  const href = beginSignIn("https://issuer.example/login?app=x", "https://own/deptcast/", storage, crypto);
  const url = new URL(href);
  assert.equal(url.origin + url.pathname, "https://issuer.example/login");
  assert.equal(url.searchParams.get("app"), "x");
  assert.equal(url.searchParams.get("state"), "01".repeat(16));
  assert.equal(url.searchParams.get("return_to"), "https://own/deptcast/");
  assert.equal(takeSignInRequest(storage), "01".repeat(16));
  assert.equal(takeSignInRequest(storage), null, "once");
  const doc = (content) => ({ querySelector: () => (content === null ? null : { content }) });
  assert.equal(signInUrl(doc(" https://issuer.example/login ")), "https://issuer.example/login");
  assert.equal(signInUrl(doc("")), null);
  assert.equal(signInUrl(doc(null)), null);
});

test("a token request goes to the host's allowed origin; its answer, or nothing in time", async () => {
  const clock = new FakeClock();
  const posted = [];
  const win = fakeWindow("https://own/");
  win.parent = { postMessage: (message, origin) => posted.push([message, origin]) };
  win.location.ancestorOrigins = ["https://host"];
  const requests = new HostTokenRequests({
    origins: new Set(["https://own", "https://host"]), win, schedule: clock.schedule, cancel: clock.cancel,
  });
  const held = { user: "ann", dept: "cardio", role: "member", exp: 100 };
  assert.equal(requests.answer({ token: "t0" }), false, "nothing asked: a sign-in, not an answer");
  const first = requests.request(held);
  const [[message, origin]] = posted;
  assert.equal(origin, "https://host");
  assert.deepEqual({ ...message, request: "-" }, { type: "deptcast.token.request", request: "-", ...held });
  assert.equal(requests.answer({ type: "deptcast.token", token: "t1", request: message.request }), true);
  assert.equal(await first, "t1");
  const second = requests.request(held);
  await clock.advance(9999);
  assert.equal(requests.waiting.size, 1);
  await clock.advance(1);
  assert.equal(await second, null, "no answer in 10 s");
  const alone = fakeWindow("https://own/");
  alone.parent = alone;
  const none = new HostTokenRequests({ origins: new Set(["https://own"]), win: alone });
  assert.equal(await none.request(held), null, "no host: at once");
  await settle();
});
