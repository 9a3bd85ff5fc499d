// The page's WAMP connection: autobahn-js does all of WAMP; this only decides when to
// (re)connect and reports one of four states to the page.
//
// autobahn's own auto-reconnect is switched off (max_retries: 0) and every attempt uses a
// fresh connection, because autobahn stops retrying for good when the router says
// GOODBYE (as Crossbar does when it shuts down), and because the page wants to retry at
// once when the browser comes back online, or when a draining node says GOODBYE with
// ``wamp.close.system_shutdown`` (within half a second, spread at random).
//
// No import of autobahn here: the page hands in ``connect`` (options => an autobahn
// Connection), so this module runs under node's test runner with a stand-in.
//
// A message after the session's end: once a router has said GOODBYE, autobahn-js takes any
// further message (an EVENT the router had already sent) as a protocol violation: it closes
// the transport (which is closing anyway) and reports "failing transport due to protocol
// violation: unexpected message type 36" through the connection's ``on_internal_error``, which
// without a handler is a console.error. A router may do exactly that while it drains, so on a
// connection whose session had joined such a report is accepted quietly (counted in
// ``lateMessages``); any other internal error is still reported.

import { CLOSE_REVOKED, CLOSE_TOKEN_EXPIRED, INVALID_TOKEN, ROUTER_NOT_AUTHORIZED, TOKEN_EXPIRED } from "./errors.js";

export const CONNECTING = "connecting";
export const CONNECTED = "connected";
export const RECONNECTING = "reconnecting";
export const OFFLINE = "offline";

/** The reason of the GOODBYE a draining node sends (SIGTERM, a rolling restart): go elsewhere
 * now. The balancer sends the new connection to another node. */
export const GOING_AWAY = "wamp.close.system_shutdown";

/** After GOING_AWAY, the new attempt goes within this many seconds, at a random point, so that
 * a node's pages do not all reach the balancer in the same millisecond. */
export const GOING_AWAY_SPREAD = 0.5;

/** Refusals that the same token would meet again, and the reasons a node ends a session for
 * good: stop and ask for a new sign-in. */
export const REFUSALS = new Set([
  INVALID_TOKEN,
  TOKEN_EXPIRED,
  CLOSE_TOKEN_EXPIRED, // a session's token ran out (a newer one brings it back)
  CLOSE_REVOKED, // never come back by itself: tell the application
  ROUTER_NOT_AUTHORIZED,
  "wamp.error.authentication_failed",
  "wamp.error.authorization_failed",
  "wamp.error.no_auth_method",
  "wamp.error.no_such_realm",
  "wamp.error.cannot_authenticate",
]);

/** What autobahn-js reports when a message arrives after the session ended (GOODBYE): see the
 * comment at the top. */
const LATE_MESSAGE = /protocol violation: unexpected message type \d+/;

/** Whether an internal error autobahn-js reports is a message that arrived after the session's
 * end (only a connection whose session had joined can get one). */
export function isLateMessage(err) {
  const text = err && typeof err.message === "string" ? err.message : String(err);
  return LATE_MESSAGE.test(text);
}

/** The WebSocket URL of the node that served this page: ``ws`` beside the page, so a proxy
 * may serve both under a path prefix. */
export function nodeUrl(href = window.location.href) {
  const url = new URL("ws", href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.hash = "";
  url.search = "";
  return url.href;
}

/** The delay before retry number ``attempt`` (0-based), in seconds, with jitter so that
 * a whole department does not reconnect in the same instant after a node restart. */
export function retryDelay(attempt, { initial = 1, growth = 1.6, max = 20, jitter = 0.25 } = {}) {
  const base = Math.min(max, initial * growth ** attempt);
  return Math.max(0.2, base * (1 + jitter * (2 * Math.random() - 1)));
}

export class Link {
  /**
   * @param {object} options
   * @param {string} options.url WebSocket URL of the node
   * @param {string} options.realm
   * @param {() => string} options.token the current token (asked at every challenge)
   * @param {(session, details) => Promise} options.onJoin subscribe and catch up; the state
   *   becomes "connected" when it resolves; if it fails, the link reconnects
   * @param {(state, info) => void} options.onState
   * @param {(options: object) => object} options.connect makes an autobahn Connection (not
   *   opened yet) from its options
   * @param {(session) => void} [options.onLost] a session that had opened is gone (closed,
   *   lost or stopped), told before the new state
   * @param {(fn: () => void, ms: number) => any} [options.schedule] a timer (setTimeout)
   * @param {(handle: any) => void} [options.cancel] clearTimeout
   * @param {() => number} [options.random] Math.random
   * @param {(refusal: string, details: object) => boolean} [options.shouldStop] whether a
   *   close reason (an ABORT's refusal or a GOODBYE's reason) stops the link for good; by
   *   default the :data:`REFUSALS`
   * @param {(err: any, text: string) => void} [options.onInternalError] autobahn's internal
   *   errors other than a late message (console.error)
   */
  constructor({
    url, realm, token, onJoin, onState, connect, onLost = () => {}, retry = {},
    schedule = (fn, ms) => setTimeout(fn, ms), cancel = (handle) => clearTimeout(handle),
    random = Math.random, shouldStop = (refusal) => REFUSALS.has(refusal),
    onInternalError = (err, text) => console.error(text || "autobahn:", err),
  }) {
    this.shouldStop = shouldStop;
    this.onInternalError = onInternalError;
    this.lateMessages = 0;
    this.connect = connect;
    this.random = random;
    this.onLost = onLost;
    this.schedule = schedule;
    this.cancel = cancel;
    this.url = url;
    this.realm = realm;
    this.token = token;
    this.onJoin = onJoin;
    this.onState = onState;
    this.retry = retry;
    this.conn = null;
    this.session = null;
    this.timer = null;
    this.attempt = 0;
    this.stopped = true;
    this.everJoined = false;
    this.state = OFFLINE;
  }

  _set(state, info = {}) {
    this.state = state;
    this.onState(state, info);
  }

  /** Connect now (again); a no-op while connected. */
  start() {
    this.stopped = false;
    if (this.conn) return;
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
    this._set(this.everJoined ? RECONNECTING : CONNECTING, { retryIn: 0 });
    this._open();
  }

  /** While waiting to retry, retry at once (e.g. the browser is back online). */
  retryNow() {
    if (!this.stopped && !this.conn) {
      this.attempt = 0;
      this.start();
    }
  }

  /** Drop the connection (if any) and make a new one at once, e.g. to sign in with a new token;
   * the session is reported lost first. A no-op while stopped. */
  reconnect() {
    if (this.stopped) return;
    const conn = this.conn;
    const session = this.session;
    this.conn = null; // its close is an old connection's from now on
    this.session = null;
    if (session) this.onLost(session);
    if (conn) {
      try {
        conn.close("wamp.close.normal", "reconnecting");
      } catch (e) {
        // already closing
      }
    }
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
    this.attempt = 0;
    this._set(this.everJoined ? RECONNECTING : CONNECTING, { retryIn: 0 });
    this._open();
  }

  /** Disconnect and stay offline. */
  stop(reason = "signed out") {
    this.stopped = true;
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
    const conn = this.conn;
    const session = this.session;
    this.conn = null;
    this.session = null;
    if (session) this.onLost(session);
    if (conn) {
      try {
        conn.close("wamp.close.normal", reason);
      } catch (e) {
        // already closing
      }
    }
    this._set(OFFLINE, { reason });
  }

  _open() {
    let joined = false;
    const conn = this.connect({
      url: this.url,
      realm: this.realm,
      authmethods: ["ticket"],
      onchallenge: (session, method) => {
        if (method !== "ticket") throw new Error(`unexpected authentication method ${method}`);
        return this.token();
      },
      max_retries: 0,
      retry_if_unreachable: false,
      on_internal_error: (err, text) => {
        if (joined && isLateMessage(err)) this.lateMessages += 1;
        else this.onInternalError(err, text);
      },
    });
    this.conn = conn;

    conn.onopen = (session, details) => {
      joined = true;
      if (conn !== this.conn) return;
      this.session = session;
      Promise.resolve()
        .then(() => this.onJoin(session, details))
        .then(() => {
          if (conn !== this.conn || !session.isOpen) return;
          this.attempt = 0;
          this.everJoined = true;
          this._set(CONNECTED, {});
        })
        .catch((err) => {
          if (conn !== this.conn) return;
          // e.g. the node's components are still starting: drop this session, try again
          this.lastError = err;
          try {
            conn.close("wamp.close.normal", "catch-up failed");
          } catch (e) {
            // already closed
          }
        });
    };

    conn.onclose = (reason, details) => {
      if (conn !== this.conn) return true; // an old connection: ignore
      const session = this.session;
      this.conn = null;
      this.session = null;
      if (session) this.onLost(session);
      if (this.stopped) return true;
      const refusal = details && details.reason;
      if (refusal && this.shouldStop(refusal, details)) {
        this.stopped = true;
        this._set(OFFLINE, { refusal, message: details.message || "" });
        return true;
      }
      const goingAway = refusal === GOING_AWAY;
      let delay;
      if (goingAway) {
        // the node is stopping and asks its clients to go elsewhere: now, not after the
        // back-off meant for a node that failed (which starts afresh if this attempt fails)
        delay = GOING_AWAY_SPREAD * this.random();
        this.attempt = 0;
      } else {
        delay = retryDelay(this.attempt, this.retry);
        this.attempt += 1;
      }
      this._set(this.everJoined ? RECONNECTING : CONNECTING,
        { retryIn: delay, lost: reason, error: this.lastError, goingAway });
      this.lastError = null;
      this.timer = this.schedule(() => {
        this.timer = null;
        if (!this.stopped && !this.conn) this._open();
      }, delay * 1000);
      return true; // autobahn must not retry on its own
    };

    conn.open();
  }
}
