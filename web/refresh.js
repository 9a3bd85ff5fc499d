// Token refresh: a session lives no longer than its token (the node ends it at ``exp`` with
// GOODBYE ``deptcast.close.token_expired``) unless the client hands it a newer token of the
// same user, department and role with ``deptcast.session.refresh(token)``: no reconnect,
// nothing missed. No DOM, no WAMP: the client hands in how to call the procedure, how to
// reconnect, and where newer tokens come from; timers are injected so that node's test runner
// drives them.
//
// 1. When. Ahead of ``exp``: at 80% of the token's lifetime (from ``iat``, else from when the
//    client got it) or 60 s before ``exp``, whichever is sooner, but never before half of the
//    lifetime (a token of a minute would otherwise be renewed as soon as it arrives), minus a
//    random part of up to a tenth of the lifetime, so that a department's clients, signed in
//    together, do not all ask in the same second.
// 2. Asking. The application's token source is asked for a newer token. None (or no answer):
//    asked again later, while the token lasts (a quarter of what is left, 250 ms to 30 s).
// 3. A newer token (same user and department, a later ``exp``): the next connection uses it
//    whatever happens. On an open session it is handed over: the answer ``{exp}`` is the
//    session's new end, from which the next renewal is planned. ``not_authorized`` (the node
//    sees another identity or role), or a node that does not offer the procedure (the router's
//    no_such_procedure or not_authorized): reconnect with it (the client resumes by position,
//    nothing is missed). ``unavailable``, ``rate_limited`` or a lost
//    answer: handed over again shortly. Any other refusal: the token is dropped (the session
//    keeps the one it has) and the source is asked again.
// 4. A token of the same user with another role: reconnect with it. A token of another user or
//    department is not a renewal: it is ignored here (the application signs in anew).

import { claimsOf } from "./signin.js";
import { NOT_AUTHORIZED, errorUri, notOffered, retryable } from "./errors.js";

/** Share of a token's lifetime after which it is renewed (rule 1). */
export const REFRESH_SHARE = 0.8;
/** Renew at the latest this long before ``exp`` (rule 1). */
export const REFRESH_LEAD_MS = 60000;
/** Never renew before this share of the lifetime (rule 1). */
export const REFRESH_FLOOR_SHARE = 0.5;
/** The shortest wait before trying again (rule 2). */
const MIN_RETRY_MS = 250;
/** Up to this share of the lifetime is taken off at random (rule 1). */
export const REFRESH_JITTER_SHARE = 0.1;

/**
 * When to renew a token (rule 1), in ms since the epoch.
 *
 * @param {{exp: number, iat?: number}} claims seconds since the epoch, as in the JWT
 * @param {number} receivedAt when the client got the token (ms), the start of its life if it
 *   has no usable ``iat``
 * @param {() => number} [random] Math.random
 */
export function refreshAt(claims, receivedAt, random = Math.random) {
  const expMs = Number(claims && claims.exp) * 1000;
  if (!Number.isFinite(expMs)) return null;
  const iatMs = Number(claims.iat) * 1000;
  const start = Number.isFinite(iatMs) && iatMs < expMs ? iatMs : receivedAt;
  const life = expMs - start;
  if (life <= 0) return receivedAt;
  const base = Math.max(start + REFRESH_FLOOR_SHARE * life,
    Math.min(start + REFRESH_SHARE * life, expMs - REFRESH_LEAD_MS));
  return base - random() * REFRESH_JITTER_SHARE * life;
}

/**
 * How long to wait before trying again (rule 2) while a token that ends at ``exp`` (seconds)
 * lasts: a quarter of what is left, between 250 ms and 30 s; null once less than 250 ms are left.
 */
export function retryBeforeExpiry(exp, now) {
  const left = Number(exp) * 1000 - now;
  if (!Number.isFinite(left) || left <= MIN_RETRY_MS) return null;
  return Math.min(30000, Math.max(MIN_RETRY_MS, left / 4));
}

/**
 * What ``candidate`` is to the token held now: ``"newer"`` (same user, department and role, a
 * later ``exp``), ``"role"`` (same user and department, another role), ``"identity"`` (another
 * user or department), ``"stale"`` (not later), or ``"invalid"`` (not a deptcast token).
 */
export function compareTokens(current, candidate) {
  const now = claimsOf(current);
  const next = claimsOf(candidate);
  if (!next) return "invalid";
  if (!now || now.sub !== next.sub || now.dept !== next.dept) return "identity";
  if (now.role !== next.role) return "role";
  const later = Number.isFinite(next.exp) && (!Number.isFinite(now.exp) || next.exp > now.exp);
  return later ? "newer" : "stale";
}

/** Keeps a client's token fresh: rules 1 to 4 above. */
export class TokenKeeper {
  /**
   * @param {object} options
   * @param {string} options.token the token to sign in with
   * @param {?(info: object) => (string|null|Promise<string|null>)} [options.source] asked for a
   *   newer token: ``{user, dept, role, exp}`` of the one held; null: no source (a session ends
   *   at its token's ``exp``)
   * @param {(token: string) => Promise<{exp: number}>} options.refresh calls
   *   deptcast.session.refresh on the open session
   * @param {() => void} options.reconnect drop the connection and make a new one at once (it
   *   signs in with :attr:`current`)
   * @param {(info: {exp: number}) => void} [options.onRefreshed] the open session took a newer token
   * @param {(text: string) => void} [options.warn]
   */
  constructor({
    token, source = null, refresh, reconnect, onRefreshed = () => {}, warn = () => {},
    now = Date.now, schedule = (fn, ms) => setTimeout(fn, ms), cancel = (handle) => clearTimeout(handle),
    random = Math.random,
  }) {
    this.source = source;
    this.refresh = refresh;
    this.reconnect = reconnect;
    this.onRefreshed = onRefreshed;
    this.warn = warn;
    this.now = now;
    this.schedule = schedule;
    this.cancel = cancel;
    this.random = random;
    this._take(token);
    /** The token the open session holds (signed in with, or handed over), or null. */
    this.inUse = null;
    this.sessionExp = null; // when the open session ends (seconds), as the node said
    this.timer = null;
    this.generation = 0; // bumped at every join and loss: answers for an older session are dropped
    this.asking = false;
  }

  _take(token) {
    this.current = token;
    this.claims = claimsOf(token);
    this.receivedAt = this.now();
  }

  /** A session opened with ``token`` (the one given at its sign-in): plan the renewal. */
  joined(token) {
    this.generation += 1;
    this.inUse = token;
    const claims = claimsOf(token);
    this.sessionExp = claims ? claims.exp : null;
    if (token === this.current) this._planRenewal();
    else this._handOver(); // a newer one came while signing in
  }

  /** No session any more: nothing to hand over until the next one. */
  lost() {
    this.generation += 1;
    this.inUse = null;
    this.sessionExp = null;
    this._stop();
  }

  /** Forget every plan (the client stopped). */
  stop() {
    this.lost();
  }

  /**
   * A token from the application (its host pushed one, or the source answered): used as rules
   * 3 and 4 say. Returns how it compared (see :func:`compareTokens`).
   */
  offer(token) {
    const kind = compareTokens(this.current, token);
    if (kind === "newer") {
      this._take(token);
      if (this.inUse !== null) this._handOver();
    } else if (kind === "role") {
      this._take(token);
      if (this.inUse !== null) this.reconnect();
    } else if (kind === "identity") {
      this.warn("ignored a token of another user or department: sign in anew to switch");
    } else if (kind === "invalid") {
      this.warn("ignored a token that is not a deptcast token");
    }
    return kind;
  }

  /** Use ``token`` from the next connection on, whatever it is (the application says so after
   * the node refused the one held). */
  replace(token) {
    this._take(token);
  }

  /** Whether a session that ended because its token expired can come back: only with a token
   * newer than the one that session held (``held``). */
  hasNewerThan(held) {
    return held !== this.current && compareTokens(held, this.current) === "newer";
  }

  // ---- internals ------------------------------------------------------------------------

  _stop() {
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
  }

  _after(ms, fn) {
    this._stop();
    this.timer = this.schedule(() => {
      this.timer = null;
      fn();
    }, Math.max(0, ms));
  }

  /** Rule 1: ask the source ahead of the open session's end. */
  _planRenewal() {
    this._stop();
    if (this.inUse === null || !this.source) return;
    const claims = claimsOf(this.inUse) || {};
    const exp = this.sessionExp ?? claims.exp;
    const at = refreshAt({ exp, iat: claims.iat }, this.receivedAt, this.random);
    if (at === null) return;
    this._after(at - this.now(), () => this._ask());
  }

  /** Rule 2: ask the source; what it gives is offered. */
  async _ask() {
    if (this.inUse === null || this.asking) return;
    const generation = this.generation;
    const held = claimsOf(this.current) || {};
    this.asking = true;
    let token = null;
    try {
      token = await this.source({ user: held.sub, dept: held.dept, role: held.role, exp: held.exp });
    } catch (err) {
      this.warn(`the token source failed: ${err && err.message ? err.message : err}`);
    } finally {
      this.asking = false;
    }
    if (generation !== this.generation) {
      // the session went meanwhile: a newer token still serves the next connection
      if (token) this.offer(token);
      return;
    }
    const kind = token ? this.offer(token) : "none";
    if (kind !== "newer" && kind !== "role") this._askAgain();
  }

  _askAgain() {
    const wait = retryBeforeExpiry(this.sessionExp, this.now());
    if (wait !== null) this._after(wait, () => this._ask());
  }

  /** Rule 3: hand the newer token over to the open session. */
  async _handOver() {
    this._stop();
    const token = this.current;
    const generation = this.generation;
    let answer;
    try {
      answer = await this.refresh(token);
    } catch (err) {
      if (generation !== this.generation) return;
      const uri = errorUri(err);
      if (uri === NOT_AUTHORIZED || notOffered(uri)) {
        this.reconnect();
      } else if (retryable(uri)) {
        const wait = retryBeforeExpiry(this.sessionExp, this.now());
        if (wait !== null) this._after(wait, () => this._handOver());
      } else {
        this.warn(`the node refused the newer token (${uri || err}): the session keeps the one it has`);
        if (this.current === token) this._take(this.inUse);
        this._askAgain();
      }
      return;
    }
    if (generation !== this.generation) return;
    this.inUse = token;
    const exp = answer && Number.isFinite(answer.exp) ? answer.exp : (claimsOf(token) || {}).exp;
    this.sessionExp = exp;
    this.onRefreshed({ exp });
    if (this.current !== token) this._handOver(); // an even newer one came meanwhile
    else this._planRenewal();
  }
}
