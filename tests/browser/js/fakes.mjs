// Stand-ins shared by the browser client's unit tests: a clock whose timers fire only when a
// test moves it on, unsigned JWTs, and a way to let promise chains run.

/** Let pending promise callbacks (and what they start) run. */
export const settle = async (rounds = 3) => {
  for (let i = 0; i < rounds; i += 1) await new Promise((resolve) => setImmediate(resolve));
};

/** A JWT with these claims (the signature is not checked by the client). */
export function jwt(claims) {
  const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  return `${b64url({ alg: "HS256", typ: "JWT" })}.${b64url(claims)}.signature`;
}

/** A clock at ``start`` ms whose timers run when :meth:`advance` passes them. */
export class FakeClock {
  constructor(start = 0) {
    this.time = start;
    this.timers = new Map(); // handle -> {at, fn}
    this.next = 1;
    this.now = () => this.time;
    this.schedule = (fn, ms) => {
      this.timers.set(this.next, { at: this.time + Math.max(0, Number(ms) || 0), fn });
      return this.next++;
    };
    this.cancel = (handle) => this.timers.delete(handle);
  }

  /** The delays (from now) of the timers waiting, soonest first. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.time).sort((a, b) => a - b);
  }

  /** Move on ``ms``, running each timer due on the way (in time order, promises settled between). */
  async advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let first = null;
      for (const [handle, t] of this.timers) if (t.at <= end && (first === null || t.at < first[1].at)) first = [handle, t];
      if (!first) break;
      this.timers.delete(first[0]);
      this.time = Math.max(this.time, first[1].at);
      first[1].fn();
      await settle();
    }
    this.time = end;
    await settle();
  }
}

// ---- a router on a stand-in WebSocket, for the real autobahn-js ----------------------------

/** WAMP message types (the JSON serializer's arrays). */
export const WAMP = {
  HELLO: 1, WELCOME: 2, ABORT: 3, CHALLENGE: 4, AUTHENTICATE: 5, GOODBYE: 6, ERROR: 8,
  SUBSCRIBE: 32, SUBSCRIBED: 33, EVENT: 36, CALL: 48, RESULT: 50,
};

/** A procedure's answer that never comes (as when the node stops answering). */
export const HANG = Symbol("hang");

/** A WAMP error as a procedure throws it: ``{error, args, kwargs}``. */
export const wampError = (uri, detail = "", kwargs = {}) => ({ error: uri, args: detail ? [detail] : [], kwargs });

/**
 * A deptcast node as autobahn-js sees it through ``globalThis.WebSocket``: each socket the page
 * opens gets a ticket challenge, WELCOME (or ABORT), subscriptions and calls answered by
 * ``procedures``. Like a browser, a socket delivers nothing once ``close()`` was called on it,
 * unless ``lateDelivery`` is set (as Node's and some other WebSockets do).
 */
export class MiniRouter {
  /**
   * @param {object} options
   * @param {(token: string) => object} options.accept the WELCOME details for a token
   *   (``{authid, authrole, authextra}``) or ``{abort: uri, message}``
   * @param {Object<string, Function>} [options.procedures] name -> (args, kwargs, socket) =>
   *   answer (a value, a promise, :data:`HANG`, or a thrown :func:`wampError`)
   * @param {Set<string>} [options.refuse] topics whose subscription is refused
   */
  constructor({ accept, procedures = {}, refuse = new Set() }) {
    this.accept = accept;
    this.procedures = procedures;
    this.refuse = refuse;
    this.sockets = [];
    this.calls = []; // {procedure, args, kwargs, socket}
    this.tokens = []; // the ticket of every AUTHENTICATE
    this.lateDelivery = false;
    this.down = false; // new sockets fail to connect
    const router = this;
    this.WebSocket = class {
      constructor(url, protocols) {
        this.url = url;
        this.protocols = protocols;
        this.readyState = 0;
        this.protocol = "";
        this.subscriptions = new Map(); // topic -> id
        this.sentAfterClose = [];
        this.closeCalls = [];
        router.sockets.push(this);
        queueMicrotask(() => {
          if (router.down) this._closed(1006, false);
          else {
            this.readyState = 1;
            this.protocol = "wamp.2.json";
            this.onopen();
          }
        });
      }

      send(data) {
        const msg = JSON.parse(data);
        if (this.readyState !== 1) {
          this.sentAfterClose.push(msg);
          return;
        }
        router._receive(this, msg);
      }

      close(code, reason) {
        this.closeCalls.push([code, reason]);
        if (this.readyState >= 2) return;
        this.readyState = 2;
        queueMicrotask(() => this._closed(1000, true));
      }

      /** A message from the router. */
      deliver(msg) {
        if (this.readyState !== 1 && !(router.lateDelivery && this.readyState === 2)) return;
        this.onmessage({ data: JSON.stringify(msg) });
      }

      _closed(code, wasClean) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        this.onclose({ code, reason: "", wasClean });
      }
    };
  }

  /** Make autobahn-js use this router's sockets (until :meth:`uninstall`). */
  install() {
    this.saved = globalThis.WebSocket;
    globalThis.WebSocket = this.WebSocket;
    return this;
  }

  uninstall() {
    globalThis.WebSocket = this.saved;
  }

  /** The newest socket. */
  get socket() {
    return this.sockets.at(-1);
  }

  /** The calls made to ``procedure``. */
  callsTo(procedure) {
    return this.calls.filter((c) => c.procedure === procedure);
  }

  /** Send an EVENT to every socket subscribed to ``topic``. */
  publish(topic, payload) {
    for (const socket of this.sockets) {
      const id = socket.subscriptions.get(topic);
      if (id !== undefined && socket.readyState === 1) {
        socket.deliver([WAMP.EVENT, id, Math.floor(Math.random() * 1e9), {}, [payload]]);
      }
    }
  }

  /** The node ends a session: GOODBYE with ``reason``, then (after the client's reply) closes. */
  goodbye(socket, reason, message = "") {
    socket.deliver([WAMP.GOODBYE, message ? { message } : {}, reason]);
  }

  /** The connection breaks (no GOODBYE). */
  drop(socket) {
    socket._closed(1006, false);
  }

  _receive(socket, msg) {
    const [type] = msg;
    if (type === WAMP.HELLO) {
      socket.deliver([WAMP.CHALLENGE, "ticket", {}]);
    } else if (type === WAMP.AUTHENTICATE) {
      this.tokens.push(msg[1]);
      const welcome = this.accept(msg[1]);
      if (welcome.abort) {
        socket.deliver([WAMP.ABORT, { message: welcome.message || "" }, welcome.abort]);
        socket._closed(1000, true);
      } else {
        socket.deliver([WAMP.WELCOME, 1000 + this.sockets.length, { roles: { broker: {}, dealer: {} }, ...welcome }]);
      }
    } else if (type === WAMP.SUBSCRIBE) {
      const [, request, , topic] = msg;
      if (this.refuse.has(topic)) {
        socket.deliver([WAMP.ERROR, WAMP.SUBSCRIBE, request, {}, "wamp.error.not_authorized", []]);
      } else {
        const id = 500 + socket.subscriptions.size;
        socket.subscriptions.set(topic, id);
        socket.deliver([WAMP.SUBSCRIBED, request, id]);
      }
    } else if (type === WAMP.CALL) {
      const [, request, , procedure, args = [], kwargs = {}] = msg;
      this.calls.push({ procedure, args, kwargs, socket });
      const handler = this.procedures[procedure];
      const answer = async () => {
        if (!handler) throw wampError("wamp.error.no_such_procedure", `no callee for ${procedure}`);
        return handler(args, kwargs, socket);
      };
      answer().then((value) => {
        if (value !== HANG) socket.deliver([WAMP.RESULT, request, {}, [value]]);
      }, (err) => {
        socket.deliver([WAMP.ERROR, WAMP.CALL, request, {}, err.error, err.args || [], err.kwargs || {}]);
      });
    } else if (type === WAMP.GOODBYE) {
      socket.deliver([WAMP.GOODBYE, {}, "wamp.close.goodbye_and_out"]);
    }
  }
}
