// Clients of the load generator: WAMP-JSON (hand-rolled, the handful of messages deptcast's
// clients use), deptcast's legacy plain-text sockets, and Socket.IO (socket.io-client, or a
// minimal Engine.IO v4 / Socket.IO v5 client over `ws` for the highest rates).
//
// Every client has the same shape: `await open(spec, onMessage)` resolves once the client is
// ready (authenticated, subscribed / joined), `send(to, text)` sends a message as the system's
// sender does, `close()`. `onMessage(data)` gets a delivery as a Buffer or a string holding the
// message text somewhere inside (the receivers look for the benchmark's marker, see mark.js):
// the hot path parses nothing else.
"use strict";

const WebSocket = require("ws");

// WAMP message codes (WAMP spec, basic profile)
const HELLO = 1, WELCOME = 2, ABORT = 3, CHALLENGE = 4, AUTHENTICATE = 5, GOODBYE = 6, ERROR = 8;
const SUBSCRIBE = 32, SUBSCRIBED = 33, EVENT = 36, CALL = 48, RESULT = 50;

const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 60000 };

function topicName(template, vars) {
  return template.replace(/\{(\w+)\}/g, (_, k) => {
    if (!(k in vars)) throw new Error(`unknown placeholder {${k}} in topic template ${template}`);
    return vars[k];
  });
}

class WampError extends Error {
  constructor(uri, args) {
    super(`${uri}${args && args.length ? ": " + JSON.stringify(args[0]) : ""}`);
    this.uri = uri;
  }
}

/** One WAMP session over WebSocket (subprotocol wamp.2.json), ticket auth with a JWT. */
class WampClient {
  constructor() {
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject}
    this.onEvent = null;
    this.sendCounters = null; // set by a sender: {ok, errors: {uri: n}, outstanding}
    this.closed = false;
  }

  /** Connect, authenticate; `spec`: {url, authid, token, realm}. */
  connect(spec) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(spec.url, ["wamp.2.json"], WS_OPTIONS);
      this.ws = ws;
      let joined = false;
      ws.on("open", () => {
        ws.send(JSON.stringify([HELLO, spec.realm || "deptcast", {
          roles: { caller: {}, subscriber: {} },
          authmethods: ["ticket"],
          authid: spec.authid,
        }]));
      });
      ws.on("message", (data) => {
        // the hot path: an EVENT is handed over as bytes, unparsed
        if (data[1] === 0x33 && data[2] === 0x36 && data[0] === 0x5b) { // "[36"
          if (this.onEvent) this.onEvent(data);
          return;
        }
        let msg;
        try { msg = JSON.parse(data.toString()); } catch (e) { return; }
        switch (msg[0]) {
          case CHALLENGE:
            ws.send(JSON.stringify([AUTHENTICATE, spec.token, {}]));
            break;
          case WELCOME:
            joined = true;
            this.sessionId = msg[1];
            resolve(this);
            break;
          case ABORT:
            reject(new WampError(msg[2], [msg[1] && msg[1].message]));
            ws.close();
            break;
          case SUBSCRIBED:
          case RESULT: {
            const p = this.pending.get(msg[1]);
            if (p) { this.pending.delete(msg[1]); p.resolve(msg[0] === RESULT ? msg[3] : msg[2]); }
            else if (this.sendCounters) { this.sendCounters.ok++; this.sendCounters.outstanding--; }
            break;
          }
          case ERROR: {
            const p = this.pending.get(msg[2]);
            if (p) { this.pending.delete(msg[2]); p.reject(new WampError(msg[4], msg[5])); }
            else if (this.sendCounters) {
              this.sendCounters.outstanding--;
              this.sendCounters.errors[msg[4]] = (this.sendCounters.errors[msg[4]] || 0) + 1;
            }
            break;
          }
          case GOODBYE:
            ws.close();
            break;
          default:
            break;
        }
      });
      // a node busy authenticating others answers the upgrade 503 with a Retry-After (seconds)
      let refusal = null;
      ws.on("unexpected-response", (req, res) => {
        refusal = new Error(`upgrade refused: HTTP ${res.statusCode}`);
        refusal.status = res.statusCode;
        const after = Number(res.headers["retry-after"]);
        refusal.retryAfter = Number.isFinite(after) && after >= 0 ? after : null;
        res.resume();
        ws.terminate();
      });
      ws.on("error", (err) => { if (!joined) reject(refusal || err); });
      ws.on("close", (code) => {
        this.closed = true;
        if (!joined) reject(refusal || new Error(`WebSocket closed before WELCOME (${code})`));
        for (const p of this.pending.values()) p.reject(new Error("connection closed"));
        this.pending.clear();
      });
    });
  }

  _request(frame) {
    const id = this.nextId++;
    frame[1] = id;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify(frame));
    });
  }

  subscribe(topic) { return this._request([SUBSCRIBE, 0, {}, topic]); }

  call(procedure, args = [], kwargs = {}) { return this._request([CALL, 0, {}, procedure, args, kwargs]); }

  /** Fire a call without waiting; its RESULT/ERROR is counted in `sendCounters`. */
  callCounted(procedure, args) {
    const id = this.nextId++;
    this.sendCounters.outstanding++;
    this.ws.send(JSON.stringify([CALL, id, {}, procedure, args]));
  }

  close() { try { this.ws.terminate(); } catch (e) { /* already gone */ } }
}

/**
 * deptcast over WAMP. `spec`: {url, authid, token, dept, topics: [template...], history: bool, ack: bool}
 * Placeholders in topic templates: {dept}, {user}. With `ack`, the ids of the first history page
 * are acknowledged as delivered (one deptcast.ack call, as the shipped clients make).
 */
async function openWamp(spec, onMessage) {
  const c = new WampClient();
  await c.connect(spec);
  c.onEvent = onMessage;
  const vars = { dept: spec.dept, user: spec.authid };
  await Promise.all((spec.topics || []).map((t) => c.subscribe(topicName(t, vars))));
  if (spec.history) {
    const args = await c.call("deptcast.history", [], { limit: 100 }); // the RESULT's arguments: [envelopes]
    const page = Array.isArray(args) && Array.isArray(args[0]) ? args[0] : [];
    if (spec.ack) await c.call("deptcast.ack", [page.map((e) => e.id), "delivered"]);
  }
  return {
    client: c,
    send(to, text) { c.callCounted("deptcast.send", [to, text]); },
    useCounters(counters) { c.sendCounters = counters; },
    close() { c.close(); },
  };
}

/**
 * deptcast's legacy endpoint: ws://host:port/webSocket/<dept>_<user>?token=JWT. The socket
 * opens once its subscriptions are in place; frames out are the bare message text.
 * `spec`: {base (ws://host:port), dept, authid, token}
 */
function openLegacy(spec, onMessage) {
  return new Promise((resolve, reject) => {
    const url = `${spec.base}/webSocket/${spec.dept}_${spec.authid}?token=${encodeURIComponent(spec.token)}`;
    const ws = new WebSocket(url, WS_OPTIONS);
    let counters = null;
    let opened = false;
    ws.on("open", () => {
      opened = true;
      resolve({
        send(to, text) { ws.send(JSON.stringify({ to, message: text })); },
        useCounters(c) { counters = c; },
        close() { try { ws.terminate(); } catch (e) { /* gone */ } },
      });
    });
    ws.on("message", (data) => {
      // an error frame is JSON {"error": ...}; anything else is a delivered message
      if (data[0] === 0x7b && data.indexOf('{"error"') === 0) {
        if (counters) {
          let uri = "?";
          try { uri = JSON.parse(data.toString()).error; } catch (e) { /* keep ? */ }
          counters.errors[uri] = (counters.errors[uri] || 0) + 1;
        }
        return;
      }
      onMessage(data);
    });
    ws.on("unexpected-response", (req, res) => {
      reject(new Error(`legacy handshake refused: ${res.statusCode} ${res.statusMessage}`));
      req.destroy();
    });
    ws.on("error", (err) => { if (!opened) reject(err); });
    ws.on("close", (code) => { if (!opened) reject(new Error(`legacy socket closed before open (${code})`)); });
  });
}

/** Socket.IO with socket.io-client. `spec`: {base (http://host:port), dept} */
function openSioLib(spec, onMessage) {
  const { io } = require("socket.io-client");
  return new Promise((resolve, reject) => {
    const socket = io(spec.base, {
      transports: ["websocket"], forceNew: true, reconnection: false, timeout: 60000,
      perMessageDeflate: false,
    });
    socket.on("connect_error", (err) => reject(err));
    socket.on("m", onMessage);
    socket.on("connect", () => {
      socket.emit("join", spec.dept, () => resolve({
        send(to, text) { socket.emit("send", { to, message: text }); },
        useCounters() {},
        close() { socket.disconnect(); },
      }));
    });
  });
}

/**
 * Socket.IO, the protocol spoken directly over `ws` (Engine.IO v4 packets: 0 open, 2 ping,
 * 3 pong, 4 message; Socket.IO v5 inside: 0 connect, 2 event, 3 ack), so that the client's
 * own decoding never limits the peer's measured rate. Deliveries reach onMessage as the raw
 * `42["m","<text>"]` frame.
 */
function openSioRaw(spec, onMessage) {
  return new Promise((resolve, reject) => {
    const url = `${spec.base.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`;
    const ws = new WebSocket(url, WS_OPTIONS);
    let ready = false;
    const handle = {
      send(to, text) { ws.send("42" + JSON.stringify(["send", { to, message: text }])); },
      useCounters() {},
      close() { try { ws.terminate(); } catch (e) { /* gone */ } },
    };
    ws.on("message", (data) => {
      const c0 = data[0];
      if (c0 === 0x34) { // "4": a Socket.IO packet
        const c1 = data[1];
        if (c1 === 0x32) { onMessage(data); return; }              // 42 event
        if (c1 === 0x30) { ws.send('421["join",' + JSON.stringify(spec.dept) + "]"); return; } // 40 connected
        if (c1 === 0x33) { if (!ready) { ready = true; resolve(handle); } return; }          // 431[true]
        if (c1 === 0x34) { reject(new Error(`socket.io connect error ${data}`)); return; }   // 44
      } else if (c0 === 0x30) { ws.send("40"); }                   // 0: Engine.IO open
      else if (c0 === 0x32) { ws.send("3"); }                      // 2: ping
    });
    ws.on("error", (err) => { if (!ready) reject(err); });
    ws.on("close", (code) => { if (!ready) reject(new Error(`socket.io socket closed before join (${code})`)); });
  });
}

/** Open one client of `kind` ("wamp", "legacy", "sio", "sio-raw"). */
function openClient(kind, spec, onMessage) {
  switch (kind) {
    case "wamp": return openWamp(spec, onMessage);
    case "legacy": return openLegacy(spec, onMessage);
    case "sio": return openSioLib(spec, onMessage);
    case "sio-raw": return openSioRaw(spec, onMessage);
    default: throw new Error(`unknown client kind ${kind}`);
  }
}

/** Open with retries (a node answers 503 / refuses while starting; a storm may hit the backlog). */
async function openWithRetry(kind, spec, onMessage, { attempts = 5, delayMs = 500 } = {}) {
  let lastErr;
  for (let i = 0; i < attempts; i++) {
    try { return await openClient(kind, spec, onMessage); } catch (err) {
      lastErr = err;
      await new Promise((r) => setTimeout(r, delayMs * (i + 1)));
    }
  }
  throw lastErr;
}

module.exports = { openClient, openWithRetry, WampClient, WampError, topicName };
