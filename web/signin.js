// Where the page's token comes from.
//
// 1. A URL fragment: index.html#token=<JWT>. The page removes it from the address bar at
//    once (fragments never reach the server, but would stay in the history and bookmarks).
// 2. window.postMessage({type: "deptcast.token", token: "<JWT>"}, "<this page's origin>")
//    from the host application that embeds this page in an iframe or opened it. Accepted only
//    from this page's own origin and from the origins listed in index.html's
//    <meta name="deptcast-token-origins">; anything else is ignored (a foreign site could
//    otherwise sign the page in as a user of its choosing). The page announces itself with
//    {type: "deptcast.ready"} and asks again with {type: "deptcast.token_expired"}, posted
//    only to those origins.
// 3. In quick-start mode (DEPTCAST_DEV=1) the node answers GET /dev/token with {"dev": true}
//    and the page shows a form that mints a token for any user.
// The token lives in sessionStorage (this tab only) so that a reload stays signed in.
//
// Once the page is signed in, a token that arrives in the fragment follows the postMessage rule
// too (fragmentTokenAllowed): the fragment carries no sender, so the page asks who could have
// set its address (the page that embeds it, or the one that opened it) and uses the token only
// if that origin is allowed.

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

/** Take a token from the fragment ``#token=...`` and remove it from the address bar. */
export function takeFragmentToken(win = window) {
  const hash = win.location.hash.replace(/^#/, "");
  if (!hash) return null;
  const params = new URLSearchParams(hash);
  const token = params.get("token");
  if (!token) return null;
  params.delete("token");
  const rest = params.toString();
  win.history.replaceState(null, "", win.location.pathname + win.location.search + (rest ? "#" + rest : ""));
  return token;
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

/** Post a message without a token to the host (parent frame or opener), if there is one. */
export function tellHost(message, origins, win = window) {
  const hosts = [];
  if (win.parent && win.parent !== win) {
    // where the browser tells the embedding origin, post there only (no console noise)
    const ancestors = win.location.ancestorOrigins;
    const parentOrigin = ancestors && ancestors.length ? ancestors[0] : null;
    hosts.push([win.parent, parentOrigin ? [...origins].filter((o) => o === parentOrigin) : origins]);
  }
  if (win.opener) hosts.push([win.opener, origins]);
  for (const [host, targets] of hosts) {
    for (const origin of targets) {
      try {
        host.postMessage(message, origin);
      } catch (e) {
        // a closed opener; nothing to tell
      }
    }
  }
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
