// deptcast's browser client: one ES module that front ends import (the node serves it at
// /deptcast.js, beside its page), instead of copying the page. web/README.md is its guide.
//
//   import { Client } from "https://deptcast.example.org/deptcast.js";
//   const client = new Client({ token, renewToken: askMyBackendForANewToken });
//   client.on("notices", (envelopes) => show(envelopes));
//   client.on("state", (state, info) => showConnection(state, info));
//   client.on("ended", ({ reason }) => askToSignInAgain(reason)); // "revoked", "expired", "refused"
//   await client.start();
//   const envelope = await client.send("cardio", "Ward round at 10", { onStatus });
//
// What it does, with the rules in modules of their own (no DOM, unit-tested under node):
//   link.js     connects and reconnects (back-off, a draining node's GOODBYE, refusals)
//   catchup.js  every envelope once, in per-topic order, across reconnects: resumes by position
//   refresh.js  hands the node a newer token before the old one expires (no reconnect)
//   sending.js  one idempotency key per notice, retried safely
//   receipts.js acknowledges "delivered" in batches; "seen" when the application says so
//   presence.js who is online in the user's department
//
// autobahn-js: by default it is imported from ./vendor/autobahn.js relative to this module
// (the node serves the bundle there), when start() is first called; a front end that bundles
// its own passes it as the ``autobahn`` option. The client speaks WAMP over JSON.
//
// Events (client.on(name, fn) returns a function that removes fn):
//   state     (state, info)   "connecting", "connected", "reconnecting" or "offline"; info as
//                             link.js reports it (``refusal``: the reason it stopped)
//   identity  (me)            the node accepted the token: {user, dept, role} (once per client)
//   notices   (envelopes)     new envelopes, each once, per topic in order (live, from history,
//                             or sent by this client)
//   busy      (boolean)       a catch-up from history started or ended
//   pruned    (reason)        messages after a stored position are no longer kept by the node
//   online    ({dept, users}) who is online in the user's department (users null: not offered)
//   receipts  (counts)        new counts of a notice this user sent: {id, audience, seen,
//                             delivered, pending}
//   token     ({exp})         the open session took a newer token (seconds since the epoch)
//   ended     ({reason, uri, message})  the client stopped by itself and will not reconnect:
//                             "revoked" (tell the user; never sign in again by itself),
//                             "expired" (no newer token came: sign in again), "refused"
//
// Errors: promises reject with a DeptcastError (``uri``, ``detail``, ``kwargs``): the node's
// error URIs (deptcast.error.*), or the client's own deptcast.client.connection_lost,
// .not_connected, .timeout and .stopped (see errors.js).

import { Recovery } from "./catchup.js";
import {
  CONNECTION_LOST, DeptcastError, INVALID_FRAME, NOT_CONNECTED, STOPPED, TIMEOUT, asDeptcastError, endReason,
} from "./errors.js";
import { CONNECTED, Link, OFFLINE, REFUSALS, nodeUrl } from "./link.js";
import { OnlineList } from "./presence.js";
import { AckQueue, DELIVERED, SEEN, isCounts } from "./receipts.js";
import { TokenKeeper } from "./refresh.js";
import { isKey, newKey, sendWithRetries } from "./sending.js";
import { claimsOf } from "./signin.js";
import { isEnvelope } from "./timeline.js";

export * from "./errors.js";
export { CONNECTED, CONNECTING, OFFLINE, RECONNECTING } from "./link.js";
export { isKey, newKey } from "./sending.js";

export const REALM = "deptcast";

/** How long a send attempt waits for its answer before it counts as unanswered (and is tried
 * again with the same key). */
export const SEND_TIMEOUT_MS = 30000;
/** How long a call waits for a connection before it fails with ``not_connected``. */
export const CONNECT_WAIT_MS = 30000;
/** How long receipts, recipients and refresh calls wait for their answer. */
export const CALL_TIMEOUT_MS = 30000;

const EVENTS = new Set(["state", "identity", "notices", "busy", "pruned", "online", "receipts", "token", "ended"]);

/** The topics a user's client subscribes to and resumes: its department, All, its own. */
export function topicsOf(me) {
  return [`deptcast.dept.${me.dept}`, "deptcast.all", `deptcast.user.${me.dept}_${me.user}`];
}

/** Whether ``env`` was sent by ``me`` (the sender is never in a notice's audience). */
export function isOwn(env, me) {
  return Boolean(me && env && env.sender === me.user && env.sender_dept === me.dept);
}

/** The WebSocket URL beside this module (``ws`` in the same folder: the node's /ws). */
export function defaultUrl() {
  return nodeUrl(import.meta.url);
}

export class Client {
  /**
   * @param {object} options
   * @param {string} options.token the JWT to sign in with
   * @param {?(held: {user, dept, role, exp}) => (string|null|Promise<string|null>)} [options.renewToken]
   *   asked for a newer token ahead of the held one's ``exp``; without it (or if it gives none)
   *   the session ends at ``exp`` and ``ended`` says "expired"
   * @param {(me: {user, dept, role}) => ?Object<string, number>} [options.positions] where to
   *   resume for that user: ``{topic: last seq it has}`` stored by the application (see
   *   :meth:`positions`), or null for a first visit (the newest page of history)
   * @param {string} [options.url] the node's WebSocket URL (default: :func:`defaultUrl`)
   * @param {object} [options.autobahn] autobahn-js (default: ./vendor/autobahn.js)
   * @param {boolean} [options.acknowledge] acknowledge "delivered" (default true)
   * @param {boolean} [options.presence] follow who is online in the department (default true)
   * @param {boolean} [options.receipts] follow the receipts of this user's notices (default true)
   * @param {(text: string) => void} [options.warn] (console.warn)
   */
  constructor({
    token, renewToken = null, positions = () => null, url = defaultUrl(), realm = REALM, autobahn = null,
    acknowledge = true, presence = true, receipts = true,
    warn = (text) => console.warn(`deptcast: ${text}`),
    now = Date.now, schedule = (fn, ms) => setTimeout(fn, ms), cancel = (handle) => clearTimeout(handle),
    random = Math.random, retry = {},
  }) {
    this.options = { positions, acknowledge, presence, receipts };
    this.warn = warn;
    this.now = now;
    this.schedule = schedule;
    this.cancel = cancel;
    this.random = random;
    this.listeners = new Map([...EVENTS].map((name) => [name, new Set()]));
    this._autobahnGiven = autobahn;
    this._autobahn = null;
    this._me = null;
    this.recovery = null;
    this.onlineList = null;
    this._session = null; // the open session, once its catch-up began
    this._pending = new Set(); // calls (and subscriptions) on _session: rejected when it goes
    this._waiters = new Set(); // calls waiting for a connection
    this._held = null; // the token the (last) session signed in with or took over
    this._ended = null;
    this._stopped = true;
    this.tokens = new TokenKeeper({
      token,
      source: renewToken,
      refresh: (newer) => this._onSessionCall("deptcast.session.refresh", [newer], {}, CALL_TIMEOUT_MS),
      reconnect: () => this.link.reconnect(),
      onRefreshed: (info) => {
        this._held = this.tokens.inUse;
        this._emit("token", info);
      },
      warn,
      now,
      schedule,
      cancel,
      random,
    });
    this.acks = new AckQueue({
      send: (ids, state) => this._onSessionCall("deptcast.ack", [ids, state], {}, CALL_TIMEOUT_MS),
      warn,
      now,
      schedule,
      cancel,
    });
    this.link = new Link({
      url,
      realm,
      token: () => {
        this._held = this.tokens.current;
        return this._held;
      },
      connect: (opts) => this._connect(opts),
      onJoin: (session, details) => this._onJoin(session, details),
      onState: (state, info) => this._onState(state, info),
      onLost: (session) => this._onLost(session),
      shouldStop: (refusal, details) => this._shouldStop(refusal, details),
      schedule,
      cancel,
      random,
      retry,
    });
  }

  // ---- the API --------------------------------------------------------------------------

  /** One of ``"connecting"``, ``"connected"``, ``"reconnecting"``, ``"offline"``. */
  get state() {
    return this.link.state;
  }

  /** The token the client signs in with now (the newest it was given or renewed to): store it
   * to sign in with after a reload. */
  get token() {
    return this.tokens.current;
  }

  /** The user the node accepted, ``{user, dept, role}``; null before. */
  get me() {
    return this._me ? { ...this._me } : null;
  }

  /** How the client stopped by itself (``ended``), or null. */
  get ended() {
    return this._ended;
  }

  /** Listen to an event (see the module's comment); returns the function that stops it. */
  on(name, fn) {
    const set = this.listeners.get(name);
    if (!set) throw new TypeError(`deptcast: no event "${name}" (there are: ${[...EVENTS].join(", ")})`);
    set.add(fn);
    return () => set.delete(fn);
  }

  /** Connect (loading autobahn-js first if it was not given). Resolves once connecting began. */
  async start() {
    this._stopped = false;
    this._ended = null;
    if (!this._autobahn) {
      this._autobahn = this._autobahnGiven || (await import("./vendor/autobahn.js")).default;
    }
    if (!this._stopped) this.link.start();
  }

  /** Disconnect for good (sign out). Calls waiting for a connection fail with ``stopped``. */
  stop(reason = "signed out") {
    this._stopped = true;
    this.link.stop(reason);
    this.tokens.stop();
    this._failWaiters(STOPPED, "the client was stopped");
  }

  /** While waiting to reconnect, try at once (e.g. the browser is back online). */
  retryNow() {
    this.link.retryNow();
  }

  /**
   * A token from the application for the same user (its host renewed it): a newer one is
   * handed to the open session (no reconnect) or used for the next connection; one with
   * another role reconnects. After the client stopped by itself (expired, refused, revoked),
   * another token of the same user starts it again. A token of another user is ignored:
   * make a new Client. Returns how it compared: ``"newer"``, ``"role"``, ``"stale"``,
   * ``"identity"`` or ``"invalid"``.
   */
  setToken(token) {
    const refused = this._held;
    const kind = this.tokens.offer(token);
    if (this._ended && kind !== "identity" && kind !== "invalid" && token !== refused) {
      // not later than the refused one, but another token of this user: the node decides
      if (this.tokens.current !== token) this.tokens.replace(token);
      this.start();
    }
    return kind;
  }

  /**
   * Send a notice: ``to`` is a department, ``"All"`` or a user key ``<dept>_<user>``. It
   * goes with one idempotency ``key`` (a new one unless given: pass the same key to send the
   * same notice again), retried after ``unavailable``, ``rate_limited`` or a lost connection
   * (sending.js). Resolves with the envelope, which also comes as a ``notices`` event; rejects
   * with a DeptcastError once it has failed.
   *
   * @param {object} [options]
   * @param {string} [options.key]
   * @param {(status: object) => void} [options.onStatus] sending / retrying / sent / failed
   * @param {number} [options.attempts]
   */
  async send(to, message, { key = newKey(), onStatus = () => {}, attempts } = {}) {
    if (!isKey(key)) {
      throw new DeptcastError(INVALID_FRAME, "key: 1 to 64 letters, digits, '-', '_' or '.'");
    }
    const envelope = await sendWithRetries({
      key,
      onStatus,
      attempts,
      random: this.random,
      sleep: (ms) => new Promise((resolve) => this.schedule(resolve, ms)),
      attempt: (k) => this._call("deptcast.send", [to, message], { key: k }, SEND_TIMEOUT_MS),
    });
    this._sent(envelope);
    return envelope;
  }

  /** The receipt counts of a notice this user sent: ``{id, audience, seen, delivered, pending}``. */
  receipts(id) {
    return this._call("deptcast.receipts", [id], {}, CALL_TIMEOUT_MS);
  }

  /**
   * One page of who is in ``state`` (``"seen"``, ``"delivered"``: has it, not seen; ``"pending"``:
   * neither) for a notice this user sent: ``{users: [{dept, user, at}], next}``; pass ``next``
   * as ``after`` for the following page (null: no more).
   */
  recipients(id, state, { after = null, limit = 200 } = {}) {
    const kwargs = after === null || after === undefined ? { limit } : { after, limit };
    return this._call("deptcast.recipients", [id, state], kwargs, CALL_TIMEOUT_MS);
  }

  /** The user saw these notices (the application decides when: receipts.js SeenRule is the
   * page's rule); acknowledged in batches. */
  seen(ids) {
    this.acks.add(ids, SEEN);
  }

  /** Where to resume next time: ``{topic: last seq delivered}`` (store it with what was shown);
   * null before the first join. */
  positions() {
    return this.recovery ? this.recovery.positions() : null;
  }

  /** How many messages arrived after their session's end and were accepted quietly. */
  get lateMessages() {
    return this.link.lateMessages;
  }

  // ---- internals ------------------------------------------------------------------------

  _emit(name, ...args) {
    for (const fn of [...this.listeners.get(name)]) {
      try {
        fn(...args);
      } catch (err) {
        console.error(`deptcast: a "${name}" listener failed`, err);
      }
    }
  }

  _connect(options) {
    const autobahn = this._autobahn;
    return new autobahn.Connection({ ...options, serializers: [new autobahn.serializer.JSONSerializer()] });
  }

  /** The node accepted a token of ``me`` for the first time: resume from the application's
   * positions for that user. */
  _adopt(me) {
    this._me = me;
    let positions = null;
    try {
      positions = this.options.positions({ ...me });
    } catch (err) {
      console.error("deptcast: the positions callback failed", err);
    }
    this.recovery = new Recovery({
      topics: topicsOf(me),
      positions,
      deliver: (envelopes) => this._delivered(envelopes),
      schedule: this.schedule,
      cancel: this.cancel,
      busy: (busy) => this._emit("busy", busy),
      warn: this.warn,
      onPruned: (reason) => this._emit("pruned", reason),
    });
    this.onlineList = new OnlineList(me.dept);
    this._emit("identity", { ...me });
  }

  async _onJoin(session, details) {
    const claims = claimsOf(this._held) || {};
    const me = {
      user: details.authid || claims.sub,
      dept: (details.authextra && details.authextra.dept) || claims.dept,
      role: details.authrole || claims.role,
    };
    if (!this._me) this._adopt(me);
    else this._me.role = me.role;
    this._session = session;
    this.tokens.joined(this._held);
    const recovery = this.recovery;
    const onEvent = (args) => {
      if (this._session === session && args && args.length) recovery.receive(args[0]);
    };
    // subscribe first, then catch up: nothing can fall between the two
    await recovery.join(
      (kwargs) => this._onSession(session, () => session.call("deptcast.history", [], kwargs), 0),
      () => Promise.all(recovery.topics.map((topic) => this._onSession(session, () => session.subscribe(topic, onEvent), 0))),
    );
    if (this.options.receipts) {
      const topic = `deptcast.receipts.${this._me.dept}_${this._me.user}`;
      const onCounts = (args) => {
        if (this._session === session && args && isCounts(args[0])) this._emit("receipts", args[0]);
      };
      // a node without receipts refuses the topic: nothing to follow then
      await this._onSession(session, () => session.subscribe(topic, onCounts), 0).catch(() => null);
    }
    if (this.options.presence) await this._followPresence(session);
  }

  /** Presence: events first, then the list (a change made while the list is on its way is in
   * it or comes after it); a node without presence leaves the list null. */
  async _followPresence(session) {
    const online = this.onlineList;
    online.reset();
    const onPresence = (args) => {
      if (this._session !== session) return;
      const outcome = online.apply(args && args[0]);
      if (outcome === "changed") this._emitOnline(online);
      else if (outcome === "resync") this._askOnline(session, online);
    };
    const subscribed = await this._onSession(session,
      () => session.subscribe(`deptcast.presence.${online.dept}`, onPresence), 0).then(() => true, () => false);
    if (subscribed) this._askOnline(session, online);
    else this._emitOnline(online);
  }

  async _askOnline(session, online) {
    try {
      const answer = await this._onSession(session, () => session.call("deptcast.presence.online", [online.dept]),
        CALL_TIMEOUT_MS);
      if (this._session === session && online.replace(answer)) this._emitOnline(online);
    } catch (err) {
      if (this._session !== session) return;
      online.reset();
      this._emitOnline(online);
    }
  }

  _emitOnline(online) {
    this._emit("online", { dept: online.dept, users: online.sorted() });
  }

  _delivered(envelopes) {
    if (this.options.acknowledge) {
      const ids = envelopes.filter((env) => !isOwn(env, this._me)).map((env) => env.id);
      if (ids.length) this.acks.add(ids, DELIVERED);
    }
    this._emit("notices", envelopes);
  }

  /** An envelope this client sent: on its own topics like any event (once, in its place),
   * elsewhere (another department, another person) straight to the application. */
  _sent(envelope) {
    if (!isEnvelope(envelope)) return;
    if (this.recovery && this.recovery.receive(envelope)) return;
    this._emit("notices", [envelope]);
  }

  _onState(state, info) {
    if (state === CONNECTED) {
      for (const waiter of [...this._waiters]) waiter.ready();
      this.acks.online(true);
    }
    if (state === OFFLINE && info.refusal) {
      this._ended = { reason: endReason(info.refusal, info.message), uri: info.refusal, message: info.message || "" };
      this.tokens.stop();
      this._failWaiters(STOPPED, `the client stopped: ${info.refusal}`);
    }
    this._emit("state", state, info);
    if (state === OFFLINE && info.refusal) this._emit("ended", { ...this._ended });
  }

  _onLost(session) {
    if (this._session === session) this._session = null;
    for (const entry of [...this._pending]) {
      if (entry.session === session) entry.fail(new DeptcastError(CONNECTION_LOST, "the connection was lost"));
    }
    if (this.recovery) this.recovery.disconnect();
    this.tokens.lost();
    this.acks.online(false);
  }

  /** Whether a close reason stops the client for good: a revocation always; an expired token
   * unless a newer one is at hand (then it signs in again with it); the link's refusals. */
  _shouldStop(refusal, details) {
    const reason = endReason(refusal, details && details.message);
    if (reason === "revoked") return true;
    if (reason === "expired") return !this.tokens.hasNewerThan(this._held);
    return REFUSALS.has(refusal);
  }

  /** Run ``start()`` (a call or a subscription) on ``session``; rejects with ``connection_lost``
   * if the session goes first (autobahn-js leaves such promises pending for ever), and with
   * ``timeout`` after ``timeoutMs`` (0: no limit). Failures become DeptcastErrors. */
  _onSession(session, start, timeoutMs) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const entry = {
        session,
        fail: (err) => finish(reject, err),
      };
      const finish = (settle, value) => {
        if (!this._pending.has(entry)) return;
        this._pending.delete(entry);
        if (timer !== null) this.cancel(timer);
        settle(value);
      };
      this._pending.add(entry);
      if (!session.isOpen) {
        finish(reject, new DeptcastError(CONNECTION_LOST, "the session is closed"));
        return;
      }
      if (timeoutMs > 0) {
        timer = this.schedule(() => finish(reject, new DeptcastError(TIMEOUT, `no answer in ${timeoutMs / 1000} s`)),
          timeoutMs);
      }
      let promise;
      try {
        promise = Promise.resolve(start());
      } catch (err) {
        promise = Promise.reject(err);
      }
      promise.then((value) => finish(resolve, value), (err) => finish(reject, asDeptcastError(err)));
    });
  }

  /** A call on the open session (refresh, ack: the session they are about). */
  _onSessionCall(procedure, args, kwargs, timeoutMs) {
    const session = this._session;
    if (!session) return Promise.reject(new DeptcastError(NOT_CONNECTED, "no open session"));
    return this._onSession(session, () => session.call(procedure, args, kwargs), timeoutMs);
  }

  /** A call once connected (waiting up to :data:`CONNECT_WAIT_MS` for a connection). */
  async _call(procedure, args, kwargs, timeoutMs) {
    const session = await this._connected();
    return this._onSession(session, () => session.call(procedure, args, kwargs), timeoutMs);
  }

  _connected() {
    if (this.link.state === CONNECTED && this._session && this._session.isOpen) {
      return Promise.resolve(this._session);
    }
    if (this._stopped || this._ended) {
      return Promise.reject(new DeptcastError(STOPPED, "the client is stopped"));
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        ready: () => {
          if (!this._session || !this._session.isOpen) return;
          done();
          resolve(this._session);
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      const timer = this.schedule(() => waiter.fail(new DeptcastError(NOT_CONNECTED,
        `no connection in ${CONNECT_WAIT_MS / 1000} s`)), CONNECT_WAIT_MS);
      const done = () => {
        this.cancel(timer);
        this._waiters.delete(waiter);
      };
      this._waiters.add(waiter);
    });
  }

  _failWaiters(uri, text) {
    for (const waiter of [...this._waiters]) waiter.fail(new DeptcastError(uri, text));
  }
}
