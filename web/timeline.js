// The timeline's data: envelopes keyed by id, kept sorted, never twice; and its cache in
// localStorage so that a reload shows what was seen and asks only for what came after.
// No DOM here: app.js renders what merge() reports.

/** How many envelopes the page keeps (and caches); older ones drop off the end. */
export const KEEP = 500;

/**
 * How many of the newest ids a catch-up re-reads. Ids are global and sort in send order,
 * but in a cluster an event relayed by another node can arrive after a newer local one;
 * asking again from a little before the newest id costs a few duplicates (dropped by id)
 * and closes that gap.
 */
export const CATCH_UP_OVERLAP = 20;

/** How many envelopes one deptcast.history call asks for; a first visit (nothing cached)
 * shows the newest page of them (``latest: true``). */
export const HISTORY_PAGE = 200;

/** Whether ``value`` looks like an envelope this page can show. Unknown fields are ignored. */
export function isEnvelope(value) {
  return value !== null && typeof value === "object"
    && typeof value.id === "string" && value.id !== ""
    && typeof value.scope === "string" && typeof value.message === "string";
}

/** Compare two ids: zero-padded decimal strings, so a length-then-text comparison is exact
 * even if the padding ever grows. */
export function compareIds(a, b) {
  if (a.length !== b.length) return a.length - b.length;
  return a < b ? -1 : a > b ? 1 : 0;
}

export class Timeline {
  constructor(keep = KEEP) {
    this.keep = keep;
    this.byId = new Map();
    this.ids = []; // ascending
  }

  get size() {
    return this.ids.length;
  }

  /** The newest id, or null when empty. */
  get lastId() {
    return this.ids.length ? this.ids[this.ids.length - 1] : null;
  }

  /** The id to pass as ``after`` to deptcast.history when catching up (null: from the start). */
  catchUpAfter(overlap = CATCH_UP_OVERLAP) {
    // a timeline this short holds the whole visible history: reading it all again is cheap
    if (this.ids.length <= overlap) return null;
    return this.ids[this.ids.length - 1 - overlap];
  }

  has(id) {
    return this.byId.has(id);
  }

  /** The envelopes, oldest first. */
  list() {
    return this.ids.map((id) => this.byId.get(id));
  }

  /**
   * Add envelopes (events or a history page, in any order). Returns
   * ``{added: [envelope...] (ascending), dropped: [id...]}``; an id already present is skipped.
   */
  merge(envelopes) {
    const added = [];
    for (const env of envelopes) {
      if (!isEnvelope(env) || this.byId.has(env.id)) continue;
      this.byId.set(env.id, env);
      added.push(env);
    }
    if (!added.length) return { added, dropped: [] };
    added.sort((a, b) => compareIds(a.id, b.id));
    const last = this.lastId;
    if (last === null || compareIds(added[0].id, last) > 0) {
      for (const env of added) this.ids.push(env.id); // the usual case: all newer
    } else {
      for (const env of added) this.ids.splice(this._insertionPoint(env.id), 0, env.id);
    }
    const dropped = [];
    while (this.ids.length > this.keep) {
      const id = this.ids.shift();
      this.byId.delete(id);
      dropped.push(id);
    }
    return { added: added.filter((env) => this.byId.has(env.id)), dropped };
  }

  /** The index of the first id greater than ``id``. */
  _insertionPoint(id) {
    let lo = 0;
    let hi = this.ids.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareIds(this.ids[mid], id) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The id that follows ``id`` in the timeline (the next newer one), or null. */
  nextId(id) {
    const i = this._insertionPoint(id);
    const at = this.ids[i] === id ? i + 1 : i;
    return at < this.ids.length ? this.ids[at] : null;
  }

  clear() {
    this.byId.clear();
    this.ids = [];
  }
}

// ---- per-topic sequence numbers: noticing a missed event -----------------------------------
//
// The store numbers every topic's messages 1, 2, 3, ... (``seq``, taken in the same
// transaction as the id, so within a topic seq and id grow together). In a cluster a link
// between two nodes can drop while both stay up, and a subscriber then misses events without
// noticing; a jump in a topic's seq tells. Envelopes stored before seq existed have none and
// are ignored here.

/** How long a gap may stay open before the page asks history for it: events relayed by
 * different nodes can arrive slightly out of order, and most gaps close on their own. */
export const GAP_GRACE_MS = 1000;

/** The topic an envelope was published to, as the page subscribes to it, or null. */
export function topicOf(env) {
  if (!isEnvelope(env)) return null;
  if (env.scope === "all") return "deptcast.all";
  if (typeof env.target !== "string" || env.target === "") return null;
  if (env.scope === "dept") return `deptcast.dept.${env.target}`;
  if (env.scope === "user") {
    // the user key <dept>_<user> (neither part may hold "_") names the topic: a user is the
    // pair (department, user id)
    const cut = env.target.indexOf("_");
    const ok = cut > 0 && cut < env.target.length - 1 && cut === env.target.lastIndexOf("_");
    return ok ? `deptcast.user.${env.target}` : null;
  }
  return null;
}

/** The envelope's sequence number, or null if it has none (stored before seq existed). */
export function seqOf(env) {
  const seq = env && env.seq;
  return Number.isSafeInteger(seq) && seq > 0 ? seq : null;
}

/**
 * Whether ``env`` reveals a gap in its topic, given ``last``, the highest seq seen for that
 * topic (null or undefined: none seen yet, so nothing can be missing). Returns the missing
 * seqs as ``{from, to}`` (inclusive), or null when there is no gap.
 */
export function seqGap(last, env) {
  const seq = seqOf(env);
  if (seq === null || !Number.isSafeInteger(last)) return null;
  return seq > last + 1 ? { from: last + 1, to: seq - 1 } : null;
}

/**
 * Per topic: the highest seq seen (and its envelope's id) and the seqs still missing below
 * it. Feed it every envelope the page gets (cache, history, events) with ``observe``.
 */
export class SeqTracker {
  /** @param {Iterable<string>} topics the topics the page subscribes to; others are ignored */
  constructor(topics = []) {
    this.topics = new Set(topics);
    this.high = new Map(); // topic -> {seq, id}
    this.missing = new Map(); // topic -> [{from, to, after}] ascending; after: the id to read history after
  }

  /** Look at envelopes (any order); true if a new gap opened. */
  observe(envelopes) {
    let opened = false;
    for (const env of envelopes) {
      const topic = topicOf(env);
      const seq = seqOf(env);
      if (topic === null || seq === null || !this.topics.has(topic)) continue;
      const high = this.high.get(topic);
      if (!high) {
        this.high.set(topic, { seq, id: env.id });
        continue;
      }
      const gap = seqGap(high.seq, env);
      if (gap) {
        // the missing ones were sent after the newest one seen before the jump
        const list = this.missing.get(topic) || [];
        list.push({ from: gap.from, to: gap.to, after: high.id });
        this.missing.set(topic, list);
        opened = true;
      }
      if (seq > high.seq) this.high.set(topic, { seq, id: env.id });
      else if (seq < high.seq) this._fill(topic, seq);
    }
    return opened;
  }

  _fill(topic, seq) {
    const list = this.missing.get(topic);
    if (!list) return;
    const i = list.findIndex((r) => r.from <= seq && seq <= r.to);
    if (i < 0) return;
    const r = list[i];
    const parts = [];
    if (r.from < seq) parts.push({ from: r.from, to: seq - 1, after: r.after });
    if (seq < r.to) parts.push({ from: seq + 1, to: r.to, after: r.after });
    list.splice(i, 1, ...parts);
    if (!list.length) this.missing.delete(topic);
  }

  /** Whether any seq is still missing. */
  get hasGaps() {
    return this.missing.size > 0;
  }

  /** The missing seqs: ``{topic: [[from, to], ...]}``. */
  gaps() {
    const out = {};
    for (const [topic, list] of this.missing) out[topic] = list.map((r) => [r.from, r.to]);
    return out;
  }

  /** The id to read history after so that every open gap is covered, or null if none is open. */
  gapAfter() {
    let after = null;
    for (const list of this.missing.values()) {
      for (const r of list) if (after === null || compareIds(r.after, after) < 0) after = r.after;
    }
    return after;
  }

  /** The highest seq per topic now: pass it to ``settle`` after reading history. */
  highs() {
    return new Map([...this.high].map(([topic, h]) => [topic, h.seq]));
  }

  /** Stop waiting for the seqs up to ``highs`` (from before a history read that should have
   * brought them): history is complete, so what it did not bring will not come. */
  settle(highs) {
    for (const [topic, upTo] of highs) {
      const list = this.missing.get(topic);
      if (!list) continue;
      const rest = [];
      for (const r of list) if (r.to > upTo) rest.push({ ...r, from: Math.max(r.from, upTo + 1) });
      if (rest.length) this.missing.set(topic, rest);
      else this.missing.delete(topic);
    }
  }

  clear() {
    this.high.clear();
    this.missing.clear();
  }
}

// ---- the per-user cache in localStorage -------------------------------------------------

const CACHE_VERSION = 1;

/** The storage key of one user's cache: the user key ``<dept>_<user>`` names a user. */
export function cacheKey(dept, user) {
  return `deptcast:v${CACHE_VERSION}:timeline:${dept}_${user}`;
}

/** The cached envelopes of a user (oldest first), or [] if there are none or they are unreadable. */
export function loadCache(storage, key) {
  try {
    const raw = storage.getItem(key);
    if (!raw) return [];
    const data = JSON.parse(raw);
    return Array.isArray(data.envelopes) ? data.envelopes.filter(isEnvelope) : [];
  } catch (e) {
    return [];
  }
}

/** Store the timeline (and so its last id) for the next visit; quota errors only lose the cache. */
export function saveCache(storage, key, timeline) {
  try {
    storage.setItem(key, JSON.stringify({ lastId: timeline.lastId, envelopes: timeline.list() }));
    return true;
  } catch (e) {
    return false;
  }
}

export function dropCache(storage, key) {
  try {
    storage.removeItem(key);
  } catch (e) {
    // storage may be disabled; nothing to drop then
  }
}
