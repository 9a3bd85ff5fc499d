// Sending a notice safely: one idempotency key per notice, reused on every retry of it, so
// that a retry after ``unavailable`` or a lost connection (the first try may have been stored)
// never stores it twice: the node answers a key it has seen with the first envelope. No DOM, no
// WAMP: the client hands in how to make one attempt and how to wait.
//
// 1. A notice gets its key once (``crypto.randomUUID()``); a retry of the same notice, by the
//    client or by the user pressing Send again on the same text, uses the same key.
// 2. Retried: ``unavailable``, a lost or unanswered call (outcome unknown), no connection yet,
//    and ``rate_limited`` (after its ``retry_after``). Not retried: every other refusal (the
//    same notice would be refused again).
// 3. Back-off between attempts: 1, 2, 4, 8 s... up to 15 s, a quarter either way at random; at
//    most :data:`SEND_ATTEMPTS` attempts, then the notice has failed (the user may send it
//    again: rule 1 keeps that safe).

import { RATE_LIMITED, asDeptcastError, rateLimitWait, retryable } from "./errors.js";

/** An idempotency key: 1 to 64 letters, digits, ``-``, ``_`` or ``.`` (the contract's rule). */
export const KEY_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/** How many attempts a notice gets before it has failed (rule 3). */
export const SEND_ATTEMPTS = 6;

/** Whether ``key`` is a valid idempotency key. */
export function isKey(key) {
  return typeof key === "string" && KEY_PATTERN.test(key);
}

/** A new key for a new notice (rule 1): a random UUID, 36 characters. */
export function newKey(crypto = globalThis.crypto) {
  if (crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The wait before attempt number ``attempt`` + 1 (``attempt`` >= 1 failed with ``err``), in ms
 * (rule 3; a rate limit's own wait wins). */
export function sendRetryDelay(attempt, err, random = Math.random) {
  if (err && err.uri === RATE_LIMITED) return rateLimitWait(err);
  const base = Math.min(15000, 1000 * 2 ** (attempt - 1));
  return Math.round(base * (1 + 0.25 * (2 * random() - 1)));
}

/**
 * Send one notice with retries (rules 2 and 3). Resolves with the envelope; rejects with the
 * last :class:`DeptcastError` once the notice has failed.
 *
 * @param {object} options
 * @param {(key: string) => Promise<object>} options.attempt one deptcast.send with the key
 * @param {string} options.key the notice's key (rule 1)
 * @param {(ms: number) => Promise<void>} options.sleep waits
 * @param {(status: object) => void} [options.onStatus] ``{state: "sending", attempt}``,
 *   ``{state: "retrying", attempt, error, retryIn}`` (``attempt`` failed, the next in
 *   ``retryIn`` ms), ``{state: "sent", envelope}`` or ``{state: "failed", error}``
 * @param {number} [options.attempts]
 * @param {() => number} [options.random]
 */
export async function sendWithRetries({
  attempt, key, sleep, onStatus = () => {}, attempts = SEND_ATTEMPTS, random = Math.random,
}) {
  for (let n = 1; ; n += 1) {
    onStatus({ state: "sending", attempt: n });
    try {
      const envelope = await attempt(key);
      onStatus({ state: "sent", envelope });
      return envelope;
    } catch (raw) {
      const error = asDeptcastError(raw);
      if (!retryable(error.uri) || n >= attempts) {
        onStatus({ state: "failed", error });
        throw error;
      }
      const retryIn = sendRetryDelay(n, error, random);
      onStatus({ state: "retrying", attempt: n, error, retryIn });
      await sleep(retryIn);
    }
  }
}
