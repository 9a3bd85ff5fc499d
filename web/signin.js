// Where the page's token comes from.
//
// 1. A URL fragment: index.html#token=<JWT>. The page removes it from the address bar at
//    once (fragments never reach the server, but would stay in the history and bookmarks).
// 2. window.postMessage({type: "deptcast.token", token: "<JWT>"}, "<this page's origin>")
//    from the host application that embeds this page in an iframe or opened it. Accepted only
//    from this page's own origin and from the origins listed in index.html's
//    <meta name="deptcast-token-origins">; anything else is ignored (a foreign site could
//    otherwise sign the page in as a user of its choosing). The page announces itself with
//    {type: "deptcast.ready"} and asks again with {type: "deptcast.token_expired", reason},
//    posted only to those origins; {type: "deptcast.revoked"} says the user's access was
//    revoked (the page will not sign in again by itself).
// 3. In quick-start mode (DEPTCAST_DEV=1) the node answers GET /dev/token with {"dev": true}
//    and the page shows a form that mints a token for any user.
// The token lives in sessionStorage (this tab only) so that a reload stays signed in.
//
// Renewal: ahead of the token's expiry the page asks its host for a newer one with
// {type: "deptcast.token.request", request, user, dept, role, exp} (``exp``: the held token's,
// seconds since the epoch; ``request``: an id the host may echo), posted only to the allowed
// origins; the host answers {type: "deptcast.token", token[, request]} as for a sign-in
// (HostTokenRequests). No answer within 10 s counts as none (asked again while the token lasts).
// In quick-start mode the page mints the newer token from /dev/token instead.
//
// Login CSRF: a link on any site can carry #token=<someone else's token>. A page that is not
// signed in uses a fragment token without asking only if it asked for it (a sign-in request
// of this tab: a nonce it stored before sending the user to the issuer of
// <meta name="deptcast-signin-url">, which comes back as the fragment's ``state``), or if the
// page that set its address is an allowed origin (its host); otherwise it asks the user
// ("Sign in as alice (cardio)?"). Once signed in, a token that arrives in the fragment follows
// the postMessage rule (fragmentTokenAllowed): the fragment carries no sender, so the page asks
// who could have set its address (the page that embeds it, or the one that opened it) and uses
// the token only if that origin is allowed.

const TOKEN_KEY = "deptcast:token";

/** The claims of a JWT, read without checking the signature (the node checks it). */
export function claimsOf(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(b64 + "===".slice((b64.length + 3) % 4)),
      (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const claims = JSON.parse(json);
    if (!claims || typeof claims.sub !== "string" || typeof claims.dept !== "string") return null;
    const out = { sub: claims.sub, dept: claims.dept, role: claims.role || "member", exp: claims.exp };
    if (claims.iat !== undefined) out.iat = claims.iat;
    return out;
  } catch (e) {
    return null;
  }
}

/** Take a token (and the ``state`` of a sign-in request) from the fragment
 * ``#token=...&state=...`` and remove both from the address bar: ``{token, state}``, or null. */
export function takeFragment(win = window) {
  const hash = win.location.hash.replace(/^#/, "");
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (!token) return null;
  const state = params.get("state");
  params.delete("token");
  params.delete("state");
  const rest = params.toString();
  win.history.replaceState(null, "", win.location.pathname + win.location.search + (rest ? "#" + rest : ""));
  return { token, state };
}

/** Take a token from the fragment ``#token=...`` and remove it from the address bar. */
export function takeFragmentToken(win = window) {
  const taken = takeFragment(win);
  return taken ? taken.token : null;
}

export function savedToken(storage = window.sessionStorage) {
  try {
    return storage.getItem(TOKEN_KEY);
  } catch (e) {
    return null;
  }
}

export function saveToken(token, storage = window.sessionStorage) {
  try {
    if (token) storage.setItem(TOKEN_KEY, token);
    else storage.removeItem(TOKEN_KEY);
  } catch (e) {
    // storage disabled: a reload will ask for a sign-in again
  }
}

/** The origins allowed to post a token: this page's own and those of the meta tag. */
export function tokenOrigins(doc = document, own = window.location.origin) {
  const meta = doc.querySelector('meta[name="deptcast-token-origins"]');
  const listed = meta ? meta.content.split(/\s+/).filter(Boolean) : [];
  return new Set([own, ...listed.map((o) => o.replace(/\/+$/, ""))]);
}

/**
 * Whether a token that arrived in the fragment while the page is signed in may be used: only
 * if every page that can set this page's address is of an allowed origin. In a frame, those
 * are its ancestors (``location.ancestorOrigins``; a browser without it is refused); in a
 * window opened by another page, that opener (its origin is unreadable when foreign: refused);
 * in a tab of its own, only the user, who may.
 */
export function fragmentTokenAllowed(origins, win = window) {
  if (win.parent && win.parent !== win) {
    const ancestors = win.location.ancestorOrigins;
    return Boolean(ancestors && ancestors.length) && [...ancestors].every((o) => origins.has(o));
  }
  if (win.opener) {
    try {
      return origins.has(win.opener.location.origin);
    } catch (e) {
      return false; // a cross-origin opener: its origin may not even be read
    }
  }
  return true;
}

/**
 * Whether the page that set this page's address is an allowed origin: every ancestor of a
 * frame (``location.ancestorOrigins``; a browser without it: no), or the page that opened this
 * window. A tab of its own has no such page (a link from anywhere, or the user): false.
 */
export function setByAllowedHost(origins, win = window) {
  if (win.parent && win.parent !== win) return fragmentTokenAllowed(origins, win);
  if (win.opener) return fragmentTokenAllowed(origins, win);
  return false;
}

/**
 * What to do with a token that arrived in the fragment: ``"use"``, ``"ask"`` the user first,
 * or ``"ignore"`` (see the comment at the top: login CSRF).
 *
 * @param {object} options
 * @param {boolean} options.signedIn whether the page is signed in
 * @param {?string} options.state the fragment's ``state``
 * @param {?string} options.pending this tab's sign-in request (see :func:`takeSignInRequest`)
 * @param {Set<string>} options.origins the allowed origins
 */
export function fragmentDecision({ signedIn, state, pending, origins }, win = window) {
  if (signedIn) return fragmentTokenAllowed(origins, win) ? "use" : "ignore";
  if (pending && state === pending) return "use";
  return setByAllowedHost(origins, win) ? "use" : "ask";
}

const REQUEST_KEY = "deptcast:signin-request";

/** The issuer's sign-in page, from <meta name="deptcast-signin-url">, or null. */
export function signInUrl(doc = document) {
  const meta = doc.querySelector('meta[name="deptcast-signin-url"]');
  const url = meta && meta.content.trim();
  return url || null;
}

/**
 * Where to send the user to sign in: the issuer's page with ``state`` (a nonce this tab keeps
 * in sessionStorage) and ``return_to`` (this page). The issuer sends the user back to
 * ``return_to#token=<JWT>&state=<state>``.
 */
export function beginSignIn(issuer, returnTo, storage = window.sessionStorage, crypto = globalThis.crypto) {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  const nonce = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  try {
    storage.setItem(REQUEST_KEY, nonce);
  } catch (e) {
    // storage disabled: the page will ask before using the token that comes back
  }
  const url = new URL(issuer, returnTo);
  url.searchParams.set("state", nonce);
  url.searchParams.set("return_to", returnTo);
  return url.href;
}

/** This tab's pending sign-in request (its nonce), taken: it serves once. */
export function takeSignInRequest(storage = window.sessionStorage) {
  try {
    const nonce = storage.getItem(REQUEST_KEY);
    storage.removeItem(REQUEST_KEY);
    return nonce;
  } catch (e) {
    return null;
  }
}

/** How long the page waits for its host to answer a token request. */
export const TOKEN_REQUEST_TIMEOUT_MS = 10000;

/**
 * Token requests to the host application (renewal): :meth:`request` posts
 * ``{type: "deptcast.token.request", request, user, dept, role, exp}`` to the allowed origins
 * and resolves with the token of the host's answer (given to :meth:`answer`), or null when no
 * host heard it or none answered in time.
 */
export class HostTokenRequests {
  constructor({
    origins, win = window, timeoutMs = TOKEN_REQUEST_TIMEOUT_MS, schedule = (fn, ms) => setTimeout(fn, ms),
    cancel = (handle) => clearTimeout(handle),
  }) {
    this.origins = origins;
    this.win = win;
    this.timeoutMs = timeoutMs;
    this.schedule = schedule;
    this.cancel = cancel;
    this.waiting = new Map(); // request id -> {resolve, timer}
    this.next = 1;
  }

  /** Ask the host for a newer token than ``held`` (``{user, dept, role, exp}``). */
  request(held) {
    const request = `r${Date.now().toString(36)}-${this.next++}`;
    const posted = tellHost({
      type: "deptcast.token.request", request, user: held.user, dept: held.dept, role: held.role, exp: held.exp,
    }, this.origins, this.win);
    if (!posted) return Promise.resolve(null);
    return new Promise((resolve) => {
      const timer = this.schedule(() => {
        this.waiting.delete(request);
        resolve(null);
      }, this.timeoutMs);
      this.waiting.set(request, { resolve, timer });
    });
  }

  /** A ``deptcast.token`` message from an allowed origin: true if it answered a request (the
   * one it names, else every one waiting), false if none was waiting. */
  answer(data) {
    if (!this.waiting.size || typeof data.token !== "string" || !data.token) return false;
    const ids = this.waiting.has(data.request) ? [data.request] : [...this.waiting.keys()];
    for (const id of ids) {
      const { resolve, timer } = this.waiting.get(id);
      this.cancel(timer);
      this.waiting.delete(id);
      resolve(data.token);
    }
    return true;
  }
}

/** Post a message without a token to the host (parent frame or opener), if there is one;
 * returns how many messages were posted. */
export function tellHost(message, origins, win = window) {
  const hosts = [];
  if (win.parent && win.parent !== win) {
    // where the browser tells the embedding origin, post there only (no console noise)
    const ancestors = win.location.ancestorOrigins;
    const parentOrigin = ancestors && ancestors.length ? ancestors[0] : null;
    hosts.push([win.parent, parentOrigin ? [...origins].filter((o) => o === parentOrigin) : origins]);
  }
  if (win.opener) hosts.push([win.opener, origins]);
  let posted = 0;
  for (const [host, targets] of hosts) {
    for (const origin of targets) {
      try {
        host.postMessage(message, origin);
        posted += 1;
      } catch (e) {
        // a closed opener; nothing to tell
      }
    }
  }
  return posted;
}

/** Whether the node runs in quick-start mode and offers the dev sign-in form. */
export async function devSignInOffered() {
  try {
    const res = await fetch("dev/token", { headers: { accept: "application/json" }, cache: "no-store" });
    if (!res.ok) return false;
    const body = await res.json();
    return body && body.dev === true;
  } catch (e) {
    return false;
  }
}

/** Mint a token through the quick-start endpoint. */
export async function devToken(user, dept, role) {
  const res = await fetch("dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user, dept, role }),
    cache: "no-store",
  });
  let body = {};
  try {
    body = await res.json();
  } catch (e) {
    // fall through to the status
  }
  if (!res.ok || typeof body.token !== "string") {
    throw new Error(body.detail || body.error || `the node answered ${res.status}`);
  }
  return body.token;
}
