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
