// The error names a client meets, and what each means for it: the node's (fixed by the
// contract), the reasons a node ends a session with, and the few the client itself reports
// (``deptcast.client.*``: a call that could not reach the node). No DOM, no WAMP.

// ---- the node's refusals (WAMP errors of calls, or ABORT reasons at sign-in) --------------
export const INVALID_TOKEN = "deptcast.error.invalid_token";
export const TOKEN_EXPIRED = "deptcast.error.token_expired";
export const NOT_AUTHORIZED = "deptcast.error.not_authorized";
export const INVALID_FRAME = "deptcast.error.invalid_frame";
export const TOO_LARGE = "deptcast.error.too_large";
export const RATE_LIMITED = "deptcast.error.rate_limited";
export const UNAVAILABLE = "deptcast.error.unavailable";
export const PRUNED = "deptcast.error.pruned";
/** The router's answer to a procedure nobody registered (a node older than the client). */
export const NO_SUCH_PROCEDURE = "wamp.error.no_such_procedure";
/** The router's refusal of a call or subscription the role may not make; a node older than the
 * client also answers it for procedures it does not know (its authorizer allows known ones). */
export const ROUTER_NOT_AUTHORIZED = "wamp.error.not_authorized";

/** Whether a call failed because the node does not offer the procedure to this client at all. */
export function notOffered(uri) {
  return uri === NO_SUCH_PROCEDURE || uri === ROUTER_NOT_AUTHORIZED;
}

// ---- why a node ends a session (GOODBYE reasons) -------------------------------------------
/** The token's ``exp`` passed and no newer token was handed over (deptcast.session.refresh). */
export const CLOSE_TOKEN_EXPIRED = "deptcast.close.token_expired";
/** An admin revoked the user: the client must not come back by itself. */
export const CLOSE_REVOKED = "deptcast.close.revoked";

// ---- what the client reports itself --------------------------------------------------------
/** The connection went while the call was on its way: its outcome is unknown. */
export const CONNECTION_LOST = "deptcast.client.connection_lost";
/** No connection came up in time to make the call. */
export const NOT_CONNECTED = "deptcast.client.not_connected";
/** No answer in time: the outcome is unknown. */
export const TIMEOUT = "deptcast.client.timeout";
/** The client was stopped (signed out, revoked, expired) before the call could go. */
export const STOPPED = "deptcast.client.stopped";

/** The wait after ``rate_limited`` when the error says nothing (no ``retry_after``). */
export const RATE_LIMIT_WAIT_MS = 1000;

/** The longest wait a ``retry_after`` may ask for (a larger one is taken as this). */
const MAX_RETRY_AFTER_MS = 60000;

/** A refused or failed call: ``uri`` names what happened, ``detail`` says it in words. */
export class DeptcastError extends Error {
  /**
   * @param {string} uri one of the names above (or another the node sent)
   * @param {string} [detail] the node's text, or the client's
   * @param {object} [kwargs] the error's keyword arguments (e.g. ``retry_after``)
   */
  constructor(uri, detail = "", kwargs = {}) {
    super(detail ? `${detail} (${uri})` : uri);
    this.name = "DeptcastError";
    this.uri = uri;
    this.detail = detail;
    this.kwargs = kwargs || {};
    // the shape of autobahn's errors too, so one reader (errorUri) serves both
    this.error = uri;
    this.args = detail ? [detail] : [];
  }
}

/** The error URI of a failed call (autobahn-js rejects with an ``autobahn.Error``: ``error``,
 * ``args``, ``kwargs``; the client with a :class:`DeptcastError`), or null. */
export function errorUri(err) {
  return err && typeof err.error === "string" ? err.error : null;
}

/** ``err`` as a :class:`DeptcastError` (an autobahn error keeps its URI, text and kwargs;
 * anything else is the client's own failure, ``deptcast.client.connection_lost`` if it says
 * nothing better). */
export function asDeptcastError(err) {
  if (err instanceof DeptcastError) return err;
  const uri = errorUri(err);
  if (uri) {
    const detail = Array.isArray(err.args) && typeof err.args[0] === "string" ? err.args[0] : "";
    return new DeptcastError(uri, detail, err.kwargs);
  }
  return new DeptcastError(CONNECTION_LOST, err && err.message ? String(err.message) : String(err));
}

/** How long to wait, in ms, after a ``rate_limited`` refusal: its ``retry_after`` (seconds)
 * if it carries a usable one, else :data:`RATE_LIMIT_WAIT_MS`. */
export function rateLimitWait(err) {
  const after = err && err.kwargs ? err.kwargs.retry_after : undefined;
  if (typeof after !== "number" || !Number.isFinite(after) || after <= 0) return RATE_LIMIT_WAIT_MS;
  return Math.min(MAX_RETRY_AFTER_MS, after * 1000);
}

/** Failures after which the same call may succeed: the node was busy or starting, or the
 * call's outcome is unknown. Anything else (a refusal) would be answered the same again. */
const RETRYABLE = new Set([UNAVAILABLE, RATE_LIMITED, CONNECTION_LOST, NOT_CONNECTED, TIMEOUT]);

/** Whether a call that failed with ``uri`` is worth making again. */
export function retryable(uri) {
  return RETRYABLE.has(uri);
}

/**
 * Why a client stops for good, from the reason a node gave (a GOODBYE reason, or an ABORT's
 * refusal and message at sign-in): ``"revoked"`` (never come back by itself), ``"expired"`` (a
 * newer token brings it back), or ``"refused"`` (this token is no good).
 */
export function endReason(uri, message = "") {
  if (uri === CLOSE_REVOKED) return "revoked";
  // a token of a revoked user is refused as invalid, with "revoked" as the reason
  if (uri === INVALID_TOKEN && /\brevoked\b/i.test(String(message || ""))) return "revoked";
  if (uri === CLOSE_TOKEN_EXPIRED || uri === TOKEN_EXPIRED) return "expired";
  return "refused";
}
