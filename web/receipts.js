// Receipts: what a client tells the node it received (``delivered``) and what its user saw
// (``seen``), and what a sender is told back. No DOM, no WAMP; timers and clocks are injected.
//
// - AckQueue: acknowledgements go in batches, at most one ``deptcast.ack`` call per second per
//   client, one call at a time. A batch that failed for a reason that passes (unavailable, a lost
//   connection, rate_limited) is sent again; a node that does not offer the procedure turns
//   acknowledging off; any other refusal drops that batch (receipts are best effort: delivery never waits for
//   them).
// - SeenRule: a notice counts as seen once it has been visible for a second, without a break,
//   while the page is visible and focused.
// - mergeCounts, receiptSummary: the counts of a sent notice, ``{id, audience, seen, delivered,
//   pending}`` (disjoint: seen; delivered but not seen; neither), as the node and its events
//   give them, and how the page says them.
// - Throttle: at most one update per key and interval, the last one always made.

import { RATE_LIMITED, errorUri, notOffered, rateLimitWait, retryable } from "./errors.js";

export const DELIVERED = "delivered";
export const SEEN = "seen";
export const PENDING = "pending";

/** At most one deptcast.ack call this often. */
export const ACK_INTERVAL_MS = 1000;
/** At most this many ids in one deptcast.ack call. */
export const ACK_BATCH = 200;
/** At most this many ids waiting per state; the oldest go first when a client is offline long. */
export const ACK_BACKLOG = 5000;
/** How long a notice must be visible, in a focused page, to count as seen. */
export const SEEN_AFTER_MS = 1000;

export class AckQueue {
  /**
   * @param {object} options
   * @param {(ids: string[], state: string) => Promise<any>} options.send one deptcast.ack call
   * @param {(text: string) => void} [options.warn]
   */
  constructor({
    send, warn = () => {}, now = Date.now, schedule = (fn, ms) => setTimeout(fn, ms),
    cancel = (handle) => clearTimeout(handle), intervalMs = ACK_INTERVAL_MS, batch = ACK_BATCH,
    backlog = ACK_BACKLOG,
  }) {
    this.send = send;
    this.warn = warn;
    this.now = now;
    this.schedule = schedule;
    this.cancel = cancel;
    this.intervalMs = intervalMs;
    this.batch = batch;
    this.backlog = backlog;
    this.waiting = new Map([[DELIVERED, new Set()], [SEEN, new Set()]]);
    this.up = false; // a connection to send on
    this.off = false; // the node has no deptcast.ack
    this.inFlight = false;
    this.timer = null;
    this.notBefore = -Infinity; // no call before this time
    this.last = SEEN; // the state of the last call: the other goes next when both wait
    this.calls = 0;
  }

  /** Queue ``ids`` in ``state`` (``"delivered"`` or ``"seen"``). */
  add(ids, state) {
    const set = this.waiting.get(state);
    if (!set || this.off) return;
    for (const id of ids) if (typeof id === "string" && id) set.add(id);
    while (set.size > this.backlog) set.delete(set.values().next().value);
    this._kick();
  }

  /** Whether there is a connection to send on (queued ids wait for one). */
  online(up) {
    this.up = up;
    if (up) this._kick();
    else this._stopTimer();
  }

  /** How many ids wait, in all. */
  get size() {
    let n = 0;
    for (const set of this.waiting.values()) n += set.size;
    return n;
  }

  _stopTimer() {
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
  }

  _kick() {
    if (!this.up || this.off || this.inFlight || this.timer !== null || !this.size) return;
    this.timer = this.schedule(() => {
      this.timer = null;
      this._flush();
    }, Math.max(0, this.notBefore - this.now()));
  }

  async _flush() {
    if (!this.up || this.off || this.inFlight) return;
    const other = this.last === SEEN ? DELIVERED : SEEN;
    const state = this.waiting.get(other).size ? other : this.last;
    const set = this.waiting.get(state);
    if (!set.size) return;
    const ids = [];
    for (const id of set) {
      ids.push(id);
      if (ids.length >= this.batch) break;
    }
    for (const id of ids) set.delete(id);
    this.last = state;
    this.inFlight = true;
    this.notBefore = this.now() + this.intervalMs;
    this.calls += 1;
    try {
      await this.send(ids, state);
    } catch (err) {
      const uri = errorUri(err);
      if (notOffered(uri)) {
        this.off = true;
        for (const waiting of this.waiting.values()) waiting.clear();
        this.warn(`this node takes no receipts (deptcast.ack: ${uri}): acknowledging is off`);
      } else if (retryable(uri) || uri === null) {
        // back in front, oldest first: they go again with the next call
        this.waiting.set(state, new Set([...ids, ...set]));
        if (uri === RATE_LIMITED) this.notBefore = this.now() + rateLimitWait(err);
      } else {
        this.warn(`deptcast.ack refused ${ids.length} ids (${uri}): dropped`);
      }
    } finally {
      this.inFlight = false;
    }
    this._kick();
  }
}

/**
 * When notices count as seen: each must be visible for :data:`SEEN_AFTER_MS` without a break
 * while the page has the user's attention (visible and focused). Each id is reported once.
 */
export class SeenRule {
  constructor({ afterMs = SEEN_AFTER_MS, now = Date.now } = {}) {
    this.afterMs = afterMs;
    this.now = now;
    this.attending = false;
    this.visibleSince = new Map(); // id -> since when visible with attention (ms), or null
    this.done = new Set();
  }

  /** The page has (or lost) the user's attention: visible and focused. */
  attention(on) {
    on = Boolean(on);
    if (on === this.attending) return;
    this.attending = on;
    const since = on ? this.now() : null;
    for (const id of this.visibleSince.keys()) this.visibleSince.set(id, since);
  }

  /** A notice came into view, or left it. */
  visible(id, isVisible) {
    if (this.done.has(id)) return;
    if (!isVisible) this.visibleSince.delete(id);
    else if (!this.visibleSince.has(id)) this.visibleSince.set(id, this.attending ? this.now() : null);
  }

  /** A notice is gone (removed from the page). */
  forget(id) {
    this.visibleSince.delete(id);
  }

  /** Whether ``id`` was reported seen. */
  isSeen(id) {
    return this.done.has(id);
  }

  /** The ids that have now been seen (each once). */
  take() {
    const now = this.now();
    const out = [];
    for (const [id, since] of this.visibleSince) {
      if (since !== null && now - since >= this.afterMs) out.push(id);
    }
    for (const id of out) {
      this.visibleSince.delete(id);
      this.done.add(id);
    }
    return out;
  }

  /** In how many ms the next notice will have been seen if nothing changes; null: none will. */
  nextDue() {
    let first = null;
    for (const since of this.visibleSince.values()) {
      if (since !== null && (first === null || since < first)) first = since;
    }
    return first === null ? null : Math.max(0, first + this.afterMs - this.now());
  }
}

/** Whether ``value`` is a receipts count object. */
export function isCounts(value) {
  return value !== null && typeof value === "object" && typeof value.id === "string"
    && ["audience", "seen", "delivered", "pending"].every((k) => Number.isSafeInteger(value[k]) && value[k] >= 0);
}

/**
 * The counts to show of a notice: ``update`` unless it is behind ``current`` (an answer that
 * was on its way while a newer event came: receipts only grow, so fewer seen, or fewer
 * delivered-or-seen, is older). Malformed updates, or of another id, keep ``current``.
 */
export function mergeCounts(current, update) {
  if (!isCounts(update)) return current;
  if (!current) return update;
  if (update.id !== current.id) return current;
  const reached = (c) => c.seen + c.delivered;
  return update.seen < current.seen || reached(update) < reached(current) ? current : update;
}

/** The line under a sent notice: "seen by 12 of 20 · delivered to 18" (delivered counts
 * those who saw it too). */
export function receiptSummary(counts) {
  if (!isCounts(counts)) return "";
  if (counts.audience === 0) return "nobody to receive it yet";
  return `seen by ${counts.seen} of ${counts.audience} · delivered to ${counts.seen + counts.delivered}`;
}

/** Runs a key's update at most once per interval; the last one asked for always runs. */
export class Throttle {
  constructor({
    intervalMs = 500, now = Date.now, schedule = (fn, ms) => setTimeout(fn, ms),
    cancel = (handle) => clearTimeout(handle),
  } = {}) {
    this.intervalMs = intervalMs;
    this.now = now;
    this.schedule = schedule;
    this.cancel = cancel;
    this.lastRun = new Map(); // key -> ms
    this.pending = new Map(); // key -> {fn, timer}
  }

  run(key, fn) {
    const pending = this.pending.get(key);
    if (pending) {
      pending.fn = fn; // the newest wins
      return;
    }
    const wait = (this.lastRun.get(key) ?? -Infinity) + this.intervalMs - this.now();
    if (wait <= 0) {
      this.lastRun.set(key, this.now());
      fn();
      return;
    }
    const entry = { fn, timer: null };
    entry.timer = this.schedule(() => {
      this.pending.delete(key);
      this.lastRun.set(key, this.now());
      entry.fn();
    }, wait);
    this.pending.set(key, entry);
  }

  /** Forget everything, pending updates included. */
  clear() {
    for (const { timer } of this.pending.values()) this.cancel(timer);
    this.pending.clear();
    this.lastRun.clear();
  }
}
