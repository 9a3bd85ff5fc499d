// Who is online in the department: the answer of deptcast.presence.online, kept current by the
// deptcast.presence.<dept> events. No DOM, no WAMP.
//
// No periodic refresh: the node announces every change of its presence book (a user's first
// session anywhere in the cluster, or its last one gone, including the users of a peer whose
// link dropped) to its own subscribers, and those events reach the page in order on its one
// WebSocket. The page subscribes before it asks for the list, so a change made while the list
// is on its way is in the list (the node answered after it) or arrives after it. Each event
// also carries the department's count after the change: if the list kept here disagrees, it
// is asked for again instead of trusted.

export class OnlineList {
  /** @param {string} dept the department shown */
  constructor(dept) {
    this.dept = dept;
    this.users = null; // a Set once the node has answered, null before
  }

  /** Forget the list (a new connection asks again); events until then are ignored. */
  reset() {
    this.users = null;
  }

  /** Take the answer of deptcast.presence.online: ``{dept, count, users}``. False if malformed. */
  replace(answer) {
    if (!answer || typeof answer !== "object" || !Array.isArray(answer.users)) return false;
    this.users = new Set(answer.users.filter((u) => typeof u === "string"));
    return true;
  }

  /**
   * Apply a deptcast.presence.<dept> event ``{dept, user, online, count}``. Returns
   * ``"ignored"`` (not for this list, malformed, or the list is not loaded yet), ``"changed"``,
   * or ``"resync"``: the list disagrees with the event's count, ask for it again.
   */
  apply(event) {
    if (this.users === null || !event || typeof event !== "object" || event.dept !== this.dept
        || typeof event.user !== "string" || typeof event.online !== "boolean") {
      return "ignored";
    }
    if (event.online) this.users.add(event.user);
    else this.users.delete(event.user);
    return Number.isSafeInteger(event.count) && event.count !== this.users.size ? "resync" : "changed";
  }

  /** The users online, sorted; null before the first answer. */
  sorted() {
    return this.users === null ? null : [...this.users].sort();
  }
}
