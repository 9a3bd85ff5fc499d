// The timeline's data: envelopes keyed by id, kept sorted, never twice; which topic an
// envelope belongs to and its place (seq) there; and the per-user cache in localStorage, so
// that a reload shows what was seen and asks only for what came after (catchup.js decides
// what to ask). No DOM here: app.js renders what merge() reports.

/** How many envelopes the page keeps (and caches); older ones drop off the end. */
export const KEEP = 500;

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

// ---- where an envelope belongs -------------------------------------------------------------
//
// The store numbers every topic's messages 1, 2, 3, ... (``seq``, taken in the same
// transaction as the id, so within a topic seq and id grow together). Envelopes stored before
// seq existed have none.

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

// ---- the per-user cache in localStorage -------------------------------------------------
//
// Version 2 keeps the positions (``{topic: last seq delivered}``, see catchup.js) beside the
// envelopes: the newest envelopes of one topic may all have dropped off a busy timeline while
// its position still matters. Version 1 (envelopes only) is read once and replaced.

const CACHE_VERSION = 2;

/** The storage key of one user's cache: the user key ``<dept>_<user>`` names a user. */
export function cacheKey(dept, user, version = CACHE_VERSION) {
  return `deptcast:v${version}:timeline:${dept}_${user}`;
}

/** Whether ``value`` is a positions object: topic -> a whole number, 0 or more. */
export function isPositions(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    && Object.values(value).every((seq) => Number.isSafeInteger(seq) && seq >= 0);
}

/**
 * A user's cache: ``{positions, envelopes, legacy}``. ``positions`` is null when none are
 * stored (nothing cached, or a version 1 cache: ``legacy`` true); ``envelopes`` oldest first.
 * Unreadable entries read as empty.
 */
export function loadCache(storage, dept, user) {
  const read = (key) => {
    try {
      const raw = storage.getItem(key);
      return raw ? JSON.parse(raw) : null;
    } catch (e) {
      return null;
    }
  };
  const envelopesOf = (data) => (Array.isArray(data.envelopes) ? data.envelopes.filter(isEnvelope) : []);
  const data = read(cacheKey(dept, user));
  if (data && typeof data === "object") {
    return { positions: isPositions(data.positions) ? data.positions : null, envelopes: envelopesOf(data), legacy: false };
  }
  const old = read(cacheKey(dept, user, 1));
  if (old && typeof old === "object") return { positions: null, envelopes: envelopesOf(old), legacy: true };
  return { positions: null, envelopes: [], legacy: false };
}

/** Store the timeline and the positions for the next visit (and forget a version 1 cache);
 * quota errors only lose the cache. */
export function saveCache(storage, dept, user, timeline, positions) {
  try {
    storage.setItem(cacheKey(dept, user), JSON.stringify({ positions, envelopes: timeline.list() }));
    storage.removeItem(cacheKey(dept, user, 1));
    return true;
  } catch (e) {
    return false;
  }
}

/** Forget a user's cache (every version). */
export function dropCache(storage, dept, user) {
  for (const key of [cacheKey(dept, user), cacheKey(dept, user, 1)]) {
    try {
      storage.removeItem(key);
    } catch (e) {
      // storage may be disabled; nothing to drop then
    }
  }
}
