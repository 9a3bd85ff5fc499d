// The benchmark's message: 100 bytes (by default) that carry their step, sequence number and
// send time, so a receiver needs no other parsing and no shared state with the sender.
//
//   @B<step>:<seq>:<send time, µs of the monotonic clock>:xxxxxxxx...
//
// The clock is process.hrtime (CLOCK_MONOTONIC): the same in every thread and process of
// the machine, so a receiver in another worker thread or process computes the latency.
"use strict";

function nowUs() {
  const t = process.hrtime();
  return t[0] * 1e6 + t[1] / 1e3;
}

function makeMessage(step, seq, size = 100) {
  const head = `@B${step}:${seq}:${Math.round(nowUs())}:`;
  return head.length >= size ? head : head + "x".repeat(size - head.length);
}

const MARK = "@B";

/**
 * Read the marker from a delivery (Buffer or string, the message text anywhere inside).
 * Writes [step, seq, sendUs] into `out` and returns true, or false if there is none.
 */
function readMark(data, out) {
  let i = data.indexOf(MARK);
  if (i < 0) return false;
  i += 2;
  const isString = typeof data === "string";
  const n = data.length;
  for (let f = 0; f < 3; f++) {
    let v = 0;
    let digits = 0;
    for (; i < n; i++) {
      const c = isString ? data.charCodeAt(i) : data[i];
      if (c === 0x3a) break; // ":"
      if (c < 0x30 || c > 0x39) return false;
      v = v * 10 + (c - 0x30);
      digits++;
    }
    if (digits === 0 || i >= n) return false;
    out[f] = v;
    i++;
  }
  return true;
}

/** The q-quantile of a sorted Float64Array (nearest rank), or null when empty. */
function quantile(sorted, q) {
  if (sorted.length === 0) return null;
  const k = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[k];
}

module.exports = { nowUs, makeMessage, readMark, quantile };
