// Recovery: every envelope of the page's topics delivered once, in per-topic order, across
// reconnects (to any node) and events lost on the way. No DOM, no WAMP: the page hands in
// how to call deptcast.history and what to do with delivered envelopes; timers are injected
// so that node's test runner drives them. tests/vectors/recovery.json states these rules as
// test vectors that the Python client's tests read too.
//
// A topic's *position* is the seq of the last envelope delivered on it (0: none yet);
// ``deptcast.history(positions={topic: position})`` answers exactly the envelopes past each
// position, in per-topic order, so a client that comes back asks for exactly what it lacks.
//
// 1. Join (every connection, after subscribing). With no positions at all (nothing stored: a
//    first visit) the client first asks ``{latest: true}`` once, delivers the answer, and takes
//    each topic's highest seq in it as its position. Then it asks ``{positions}`` for all its
//    topics (0 for a topic with none) and pages on with the new positions until an answer is
//    empty. Events arriving meanwhile are held. A topic whose position reaches the seq just
//    before its lowest live event held during the read is complete (the client subscribed
//    first, so everything after that event arrives live: the held events continue the read
//    without a hole) and is not asked again; the read ends when no topic is left. On a busy
//    topic an empty answer may never come: each page brings what was stored since the last.
// 2. A history answer: each envelope with a seq above its topic's position is delivered and
//    becomes the position (history is complete: a seq it skips is gone for good); the rest
//    are duplicates.
// 3. A live event with seq s on a topic at position p: s <= p is a duplicate; s = p + 1 is
//    delivered, with the held events that follow it without a hole; s > p + 1 is held: a gap.
// 4. A gap still open after a grace period (events relayed by different nodes may arrive out
//    of order) is read from history: ``{positions}`` for the topics with a gap, paged until
//    empty (or, per topic, until it reaches a held live event, as in rule 1). Then the held
//    events are released: in seq order per topic, past a hole only for those held before the
//    read began (history covered them; what it did not bring will not come) of a topic read
//    until empty. A hole left above them waits for the next grace period.
// 5. Whatever is delivered at once goes out in id order (ids sort in send order). An envelope
//    without seq (stored before seq existed) is delivered once by id and never held.
// 6. A lost connection drops the held events and any read under way; the next join reads them.
// 7. Retention: a ``{positions}`` read refused with ``deptcast.error.pruned`` (a position is
//    older than what the node keeps; asking again fails the same way) stops asking for the
//    gone range. The client asks ``{latest: true}`` once and delivers, for the read's topics,
//    what is new in it; each topic shown takes its highest seq there as its position (as on a
//    first visit). Then it reads on by position. Refused again right after a newest page (a
//    first visit's too), a topic that page did not show is behind (its kept messages, if any,
//    are older than the page): for each such topic it asks its position alone (``limit`` 1)
//    and, if that is refused, the first position the node accepts, doubling the step and then
//    halving it (the node accepts exactly the positions at or past what it removed); the
//    topic moves there and its kept messages are read from history.
// 8. ``deptcast.error.rate_limited`` on a history call: wait (the error's ``retry_after``,
//    else 1 s) and ask the same again, on the same connection.

import { PRUNED, RATE_LIMITED, errorUri, rateLimitWait } from "./errors.js";
import { compareIds, isEnvelope, seqOf, topicOf } from "./timeline.js";

// the refusals rules 7 and 8 are about, and how to read them (errors.js holds every error name)
export { PRUNED, RATE_LIMITED, RATE_LIMIT_WAIT_MS, errorUri, rateLimitWait } from "./errors.js";

/** How many envelopes one deptcast.history call asks for (the node may answer fewer: it
 * bounds answers by bytes too). */
export const HISTORY_PAGE = 200;

/** How long a gap may stay open before history is asked for it. */
export const GAP_GRACE_MS = 1000;

/** How long to wait before asking again when a gap read failed. */
export const GAP_RETRY_MS = 5000;

/** How many ids of envelopes without seq are remembered to deliver each once. */
const SEQLESS_MEMORY = 2000;

/** How many ``pruned`` refusals in a row (no page delivered between) before giving up the
 * read: a node that keeps refusing every position is broken, and the connection is made again. */
const MAX_PRUNED_IN_A_ROW = 8;

/** The largest seq (JSON numbers are exact up to here). */
const MAX_SEQ = Number.MAX_SAFE_INTEGER;

/** A history read abandoned because its connection is gone. */
class Abandoned extends Error {}

/**
 * Positions for a cache written before positions were stored (a list of envelopes, possibly
 * with holes): per topic, the end of the unbroken run of seqs that starts at its oldest cached
 * envelope (what lies before that one was not wanted; a hole after it is read again).
 * Topics without a cached envelope get 0. Null when no cached envelope has a seq.
 */
export function positionsFromEnvelopes(envelopes, topics) {
  const seqs = new Map(topics.map((t) => [t, new Set()]));
  let any = false;
  for (const env of envelopes) {
    const set = seqs.get(topicOf(env));
    const seq = seqOf(env);
    if (set && seq !== null) {
      set.add(seq);
      any = true;
    }
  }
  if (!any) return null;
  const positions = {};
  for (const [topic, set] of seqs) {
    if (!set.size) {
      positions[topic] = 0;
      continue;
    }
    let end = Math.min(...set);
    while (set.has(end + 1)) end += 1;
    positions[topic] = end;
  }
  return positions;
}

export class Recovery {
  /**
   * @param {object} options
   * @param {string[]} options.topics the topics subscribed to, in a fixed order
   * @param {?Object<string, number>} options.positions stored positions, or null (none: a
   *   first visit)
   * @param {(envelopes: object[]) => void} options.deliver gets each envelope once, in
   *   per-topic order
   * @param {(fn: () => void, ms: number) => any} [options.schedule] a timer (setTimeout)
   * @param {(handle: any) => void} [options.cancel] clearTimeout
   * @param {(busy: boolean) => void} [options.busy] told when a history read starts and ends
   * @param {(text: string) => void} [options.warn]
   * @param {(reason: string) => void} [options.onPruned] told when the node said that messages
   *   after a position are no longer kept (rule 7), with the node's reason
   */
  constructor({
    topics, positions = null, deliver, schedule = (fn, ms) => setTimeout(fn, ms),
    cancel = (handle) => clearTimeout(handle), busy = () => {}, warn = () => {}, onPruned = () => {},
    graceMs = GAP_GRACE_MS, retryMs = GAP_RETRY_MS, pageSize = HISTORY_PAGE,
  }) {
    this.topics = [...topics];
    this.first = positions === null || positions === undefined;
    this.pos = new Map(this.topics.map((t) => [t, 0]));
    if (!this.first) {
      for (const t of this.topics) {
        const seq = positions[t];
        if (Number.isSafeInteger(seq) && seq >= 0) this.pos.set(t, seq);
      }
    }
    this.deliverTo = deliver;
    this.schedule = schedule;
    this.cancel = cancel;
    this.busy = busy;
    this.warn = warn;
    this.onPruned = onPruned;
    this.graceMs = graceMs;
    this.retryMs = retryMs;
    this.pageSize = pageSize;
    this.held = new Map(this.topics.map((t) => [t, new Map()])); // topic -> seq -> envelope
    this.seqless = new Set(); // ids of delivered envelopes without seq, oldest first
    this.history = null; // the current connection's deptcast.history, or null
    this.generation = 0; // bumped on every join and loss: late answers of an old one are dropped
    this.joining = false;
    this.filling = false;
    this.timer = null;
    this.prunedCount = 0; // pruned refusals met
    this.rateLimitedCount = 0; // rate_limited refusals waited out
  }

  /** The positions to store, or null while none are known (before a first join). */
  positions() {
    return this.first ? null : Object.fromEntries(this.pos);
  }

  /** Whether an event on ``topic`` is this recovery's business. */
  covers(topic) {
    return this.pos.has(topic);
  }

  /**
   * A connection joined: subscribe (events that arrive from then on are held), then catch up.
   * Resolves true when caught up, false if the connection was lost meanwhile; rejects if
   * subscribing or a history call failed (the connection should then be made again).
   *
   * @param {(kwargs: object) => Promise<object[]>} history calls deptcast.history
   * @param {() => Promise<any>} [subscribe] subscribes to the topics
   */
  async join(history, subscribe = async () => {}) {
    this._stopTimer();
    this.generation += 1;
    const generation = this.generation;
    this.history = history;
    this.joining = true;
    this.filling = false;
    this.busy(true);
    try {
      await subscribe();
      let shown = null;
      if (this.first) {
        const rows = await this._call(generation, { latest: true, limit: this.pageSize });
        shown = this._deliverNewest(rows, this.topics);
        this.first = false;
      }
      await this._read(generation, this.topics, shown);
    } catch (err) {
      if (err instanceof Abandoned) return false;
      if (generation === this.generation) {
        this.joining = false;
        this.busy(false);
      }
      throw err;
    }
    if (generation !== this.generation) return false;
    this.joining = false;
    this.busy(false);
    this._release(new Map());
    return true;
  }

  /** The connection is gone: drop what is held and any read under way. */
  disconnect() {
    if (this.joining || this.filling) this.busy(false);
    this.generation += 1;
    this.history = null;
    this.joining = false;
    this.filling = false;
    this._stopTimer();
    for (const held of this.held.values()) held.clear();
  }

  /**
   * A live event (or the envelope deptcast.send returned). Returns false if it is not on one
   * of this recovery's topics (the caller may show it anyway), true otherwise.
   */
  receive(env) {
    const topic = topicOf(env);
    if (!this.covers(topic)) return false;
    const seq = seqOf(env);
    if (seq === null) {
      this._deliver(this._unseenSeqless([env]));
      return true;
    }
    if (this.joining) {
      this.held.get(topic).set(seq, env);
      return true;
    }
    const pos = this.pos.get(topic);
    if (seq <= pos) return true;
    this.held.get(topic).set(seq, env);
    if (seq === pos + 1) this._release(new Map());
    else this._gapOpened();
    return true;
  }

  /** Whether a seq is held behind a hole. */
  get hasGaps() {
    for (const held of this.held.values()) if (held.size) return true;
    return false;
  }

  // ---- internals ------------------------------------------------------------------------

  /** One deptcast.history call on the current connection; ``rate_limited`` is waited out
   * and asked again (rule 8). */
  async _call(generation, kwargs) {
    for (;;) {
      if (generation !== this.generation || !this.history) throw new Abandoned();
      let rows;
      try {
        rows = await this.history(kwargs);
      } catch (err) {
        if (generation !== this.generation) throw new Abandoned(); // failed because the connection went
        if (errorUri(err) !== RATE_LIMITED) throw err;
        this.rateLimitedCount += 1;
        await this._sleep(rateLimitWait(err));
        continue;
      }
      if (generation !== this.generation) throw new Abandoned();
      return Array.isArray(rows) ? rows : [];
    }
  }

  _sleep(ms) {
    return new Promise((resolve) => this.schedule(resolve, ms));
  }

  /**
   * Ask ``{positions}`` for ``topics`` page by page until an empty answer (a short page is not
   * the end: the node bounds pages by bytes too), or, per topic, until its position reaches
   * the seq just before its lowest live event held during the read (rule 1): that topic is
   * not asked again, and the read ends when no topic is left. ``shown``: the topics of a
   * newest page read just before (rule 7), or null. Returns the topics whose read ended at a
   * held live event.
   */
  async _read(generation, topics, shown = null) {
    let refusals = 0;
    const liveFrom = new Map(); // topic -> the lowest seq of a live event held during the read
    const reached = new Set(); // topics whose read is complete: the held live events continue it
    const note = (asked) => {
      for (const t of asked) {
        const held = this.held.get(t);
        if (held.size) liveFrom.set(t, Math.min(liveFrom.get(t) ?? Infinity, ...held.keys()));
        if (liveFrom.has(t) && this.pos.get(t) + 1 >= liveFrom.get(t)) reached.add(t);
      }
    };
    for (;;) {
      note(topics.filter((t) => !reached.has(t)));
      const asked = topics.filter((t) => !reached.has(t));
      if (!asked.length) return reached;
      const positions = Object.fromEntries(asked.map((t) => [t, this.pos.get(t)]));
      let rows;
      try {
        rows = await this._call(generation, { positions, limit: this.pageSize });
      } catch (err) {
        if (errorUri(err) !== PRUNED) throw err;
        refusals += 1;
        this.prunedCount += 1;
        if (refusals > MAX_PRUNED_IN_A_ROW) throw err;
        this.onPruned(Array.isArray(err.args) && typeof err.args[0] === "string" ? err.args[0] : "");
        if (shown === null) {
          const newest = await this._call(generation, { latest: true, limit: this.pageSize });
          shown = this._deliverNewest(newest, asked);
        } else {
          await this._findKept(generation, asked.filter((t) => !shown.has(t)));
          shown = null;
        }
        continue;
      }
      shown = null;
      refusals = 0;
      if (!rows.length) return reached;
      note(asked); // the live events held while the page was asked for
      if (!this._deliverHistory(rows)) {
        // an answer that moves no position would be asked again for ever
        this.warn("deptcast.history answered envelopes past no position; stopped paging");
        return reached;
      }
    }
  }

  /**
   * A newest page (``latest: true``): deliver, for ``topics``, what lies past their positions;
   * each topic shown takes its highest seq in the page as its position. Returns the topics
   * shown.
   */
  _deliverNewest(rows, topics) {
    const wanted = new Set(topics);
    const shown = new Set();
    const out = [];
    for (const env of rows) {
      const topic = topicOf(env);
      if (!wanted.has(topic) || !this.covers(topic)) continue;
      const seq = seqOf(env);
      if (seq === null) {
        out.push(...this._unseenSeqless([env]));
        continue;
      }
      shown.add(topic);
      if (seq > this.pos.get(topic)) {
        this.pos.set(topic, seq);
        out.push(env);
      }
    }
    this._deliver(out);
    return shown;
  }

  /**
   * Rule 7, for topics a newest page did not show: for each, ask its position alone; if the node
   * refuses it as pruned, find the first position it accepts (the seq up to which retention
   * removed the topic's messages) and move there.
   */
  async _findKept(generation, topics) {
    for (const topic of topics) {
      let refused = null; // the highest position refused as pruned
      let accepted = null; // the lowest position accepted
      const probe = async (seq) => {
        try {
          await this._call(generation, { positions: { [topic]: seq }, limit: 1 });
          accepted = seq;
        } catch (err) {
          if (errorUri(err) !== PRUNED) throw err;
          refused = seq;
        }
      };
      await probe(this.pos.get(topic));
      if (accepted !== null) continue; // this topic's position is kept
      for (let step = 1; accepted === null; step *= 2) {
        if (refused + step > MAX_SEQ) throw new Error(`${topic}: the node refuses every position as pruned`);
        await probe(refused + step);
      }
      while (accepted - refused > 1) await probe(Math.floor((refused + accepted) / 2));
      this.warn(`${topic}: seq ${this.pos.get(topic) + 1}..${accepted} are no longer kept; going on`);
      this.pos.set(topic, accepted);
    }
  }

  /** Deliver a history page; true if a position moved. */
  _deliverHistory(rows) {
    const out = [];
    let moved = false;
    for (const env of rows) {
      const topic = topicOf(env);
      if (!this.covers(topic)) continue;
      const seq = seqOf(env);
      if (seq === null) {
        out.push(...this._unseenSeqless([env]));
      } else if (seq > this.pos.get(topic)) {
        this.pos.set(topic, seq);
        out.push(env);
        moved = true;
      }
    }
    this._deliver(out);
    return moved;
  }

  /**
   * Deliver the held events that may go: per topic in seq order while there is no hole, or
   * past a hole up to ``through.get(topic)`` (held before a history read that covered it).
   */
  _release(through) {
    const out = [];
    for (const [topic, held] of this.held) {
      if (!held.size) continue;
      const upTo = through.get(topic) || 0;
      for (const seq of [...held.keys()].sort((a, b) => a - b)) {
        const pos = this.pos.get(topic);
        if (seq > pos + 1 && seq > upTo) break;
        const env = held.get(seq);
        held.delete(seq);
        if (seq <= pos) continue;
        if (seq > pos + 1) this.warn(`${topic}: seq ${pos + 1}..${seq - 1} are not in history; going on`);
        this.pos.set(topic, seq);
        out.push(env);
      }
    }
    this._deliver(out);
    if (this.hasGaps) this._gapOpened();
  }

  _gapOpened(delay = this.graceMs) {
    if (this.timer !== null || this.filling || this.joining || !this.history) return;
    this.timer = this.schedule(() => {
      this.timer = null;
      this._fill();
    }, delay);
  }

  _stopTimer() {
    if (this.timer !== null) this.cancel(this.timer);
    this.timer = null;
  }

  /** The grace period is over: read history for the topics with a gap. */
  async _fill() {
    if (this.filling || this.joining || !this.history) return;
    const topics = this.topics.filter((t) => this.held.get(t).size);
    if (!topics.length) return;
    const through = new Map(topics.map((t) => [t, Math.max(...this.held.get(t).keys())]));
    const generation = this.generation;
    this.filling = true;
    this.busy(true);
    let reached;
    try {
      reached = await this._read(generation, topics);
    } catch (err) {
      if (err instanceof Abandoned) return;
      this.filling = false;
      this.busy(false);
      this.warn(`reading missed events failed: ${err && err.error ? err.error : err}`);
      this._gapOpened(this.retryMs);
      return;
    }
    if (generation !== this.generation) return;
    this.filling = false;
    this.busy(false);
    for (const t of reached) through.delete(t); // history stopped at its held events, not past them
    this._release(through);
  }

  _unseenSeqless(envs) {
    const out = [];
    for (const env of envs) {
      if (!isEnvelope(env) || this.seqless.has(env.id)) continue;
      this.seqless.add(env.id);
      if (this.seqless.size > SEQLESS_MEMORY) this.seqless.delete(this.seqless.values().next().value);
      out.push(env);
    }
    return out;
  }

  _deliver(envs) {
    if (!envs.length) return;
    envs.sort((a, b) => compareIds(a.id, b.id));
    this.deliverTo(envs);
  }
}
