// deptcast's reference page: sign in, one timeline (department, All, direct messages), a send
// box that offers only what the role may do, who is online, and the connection state. This
// file is the DOM and the wiring; the rules live in modules without a DOM:
//   catchup.js   what to deliver and what to ask deptcast.history (positions, gaps)
//   timeline.js  the timeline's order and the per-user cache
//   presence.js  the Online list
//   link.js      when to (re)connect
//   signin.js    where a token may come from
//
// On a shared computer: a user's cached timeline is shown only once the node has accepted a
// token for that user (the token's claims are read unverified, so anyone could forge them),
// and dropped when the node refuses a token of that user as invalid.

import autobahn from "./vendor/autobahn.js";
import { positionsFromEnvelopes, Recovery } from "./catchup.js";
import { Link, nodeUrl, CONNECTED, CONNECTING, RECONNECTING, OFFLINE } from "./link.js";
import { OnlineList } from "./presence.js";
import {
  claimsOf, takeFragmentToken, savedToken, saveToken, tokenOrigins, tellHost, fragmentTokenAllowed,
  devSignInOffered, devToken,
} from "./signin.js";
import { Timeline, loadCache, saveCache, dropCache } from "./timeline.js";

const REALM = "deptcast";
const INVALID_TOKEN = "deptcast.error.invalid_token";
const TOKEN_EXPIRED = "deptcast.error.token_expired";
const $ = (id) => document.getElementById(id);

const page = {
  token: null,
  me: null, // {user, dept, role}: from the token's claims until the node accepts it
  accepted: false, // the node accepted a token of ``me``: its cache may be shown
  link: null,
  timeline: new Timeline(),
  recovery: null, // a Recovery for ``me`` once accepted
  items: new Map(), // id -> <li>
  saveTimer: null,
  online: null, // an OnlineList for ``me.dept``
  origins: tokenOrigins(),
};

/** A connection to the node: autobahn-js over JSON (the bundle holds no other serializer). */
function connect(options) {
  return new autobahn.Connection({ ...options, serializers: [new autobahn.serializer.JSONSerializer()] });
}

// ---- sign-in ------------------------------------------------------------------------------

function showSignIn(error = "") {
  $("app").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = error;
}

function showApp() {
  $("signin").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = false;
  $("who").hidden = false;
}

function sameUser(a, b) {
  return Boolean(a && b && a.user === b.user && a.dept === b.dept);
}

/** Use ``token`` (from the fragment, the host, the dev form or this tab's storage). */
function signIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    if (page.link) console.warn("deptcast: ignored a sign-in that is not a deptcast token");
    else showSignIn("That sign-in is not a deptcast token.");
    return;
  }
  const me = { user: claims.sub, dept: claims.dept, role: claims.role };
  if (page.link && sameUser(page.me, me) && page.me.role === me.role) {
    // a fresh token for the same user (the host renews it): used from the next connection on
    page.token = token;
    saveToken(token);
    if (page.link.state === OFFLINE) page.link.start();
    return;
  }
  if (page.link) signOut({ keepCache: true, quiet: true });
  page.token = token;
  saveToken(token);
  page.me = me;
  page.accepted = false;
  page.online = null;
  $("who").textContent = `${me.user} · ${me.dept} · ${me.role}`;
  setUpComposer(me);
  clearTimeline();
  showApp();
  page.link = new Link({
    url: nodeUrl(),
    realm: REALM,
    token: () => page.token,
    connect,
    onJoin,
    onState: showConnection,
    onLost: () => page.recovery && page.recovery.disconnect(),
  });
  page.link.start();
}

function signOut({ keepCache = false, quiet = false } = {}) {
  if (page.link) page.link.stop("signed out");
  page.link = null;
  if (!keepCache && page.me) dropCache(window.localStorage, page.me.dept, page.me.user);
  forgetUser();
  saveToken(null);
  if (!quiet) {
    showSignIn();
    setConnectionText(OFFLINE, "Not signed in");
    offerSignIn();
  }
}

/** Forget the signed-in user's timeline, state and token in this page (not its cache). */
function forgetUser() {
  clearTimeout(page.saveTimer);
  page.saveTimer = null;
  page.recovery = null;
  page.accepted = false;
  page.online = null;
  page.token = null;
  page.me = null;
  clearTimeline();
  $("online-list").replaceChildren();
  $("online-note").textContent = "Who is online will show here once this node offers it.";
}

function clearTimeline() {
  page.timeline.clear();
  page.items.clear();
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = false;
  $("timeline-pruned").hidden = true;
}

/** The node accepted a token of ``me``: show its cached timeline and resume from its positions. */
function accept(me) {
  const cached = loadCache(window.localStorage, me.dept, me.user);
  const topics = topicsOf(me);
  const positions = cached.positions
    || (cached.legacy ? positionsFromEnvelopes(cached.envelopes, topics) : null);
  page.me = { ...page.me, ...me };
  page.accepted = true;
  page.online = new OnlineList(me.dept);
  clearTimeline();
  render(page.timeline.merge(cached.envelopes));
  page.recovery = new Recovery({
    topics,
    positions,
    deliver: show,
    busy: (busy) => $("timeline").setAttribute("aria-busy", String(busy)), // one announcement per catch-up
    warn: (text) => console.warn(`deptcast: ${text}`),
    onPruned: (reason) => {
      // the node's retention removed messages after this page's position: it goes on from
      // the newest page (catchup.js); say so once, in words, not the node's reason
      if ($("timeline-pruned").hidden) console.info(`deptcast: ${reason || "deptcast.error.pruned"}`);
      $("timeline-pruned").hidden = false;
    },
  });
}

/** The topics the page subscribes to for ``me``. */
function topicsOf(me) {
  return [`deptcast.dept.${me.dept}`, "deptcast.all", `deptcast.user.${me.dept}_${me.user}`];
}

async function offerSignIn() {
  const dev = await devSignInOffered();
  if (page.link) return; // signed in meanwhile (e.g. by the host)
  $("dev-form").hidden = !dev;
  $("signin-wait").hidden = dev;
  $("signin").dataset.offer = dev ? "dev-form" : "host"; // decided: the form, or the host
  if (dev) $("dev-user").focus();
  else tellHost({ type: "deptcast.ready" }, page.origins);
}

function onHostMessage(event) {
  const data = event.data;
  if (!data || typeof data !== "object" || data.type !== "deptcast.token") return;
  if (!page.origins.has(event.origin)) {
    console.warn(`deptcast: ignored a token posted by ${event.origin}: not an allowed origin`);
    return;
  }
  if (typeof data.token === "string" && data.token) signIn(data.token);
}

function onFragment() {
  const token = takeFragmentToken();
  if (!token) return;
  if (page.link && !fragmentTokenAllowed(page.origins)) {
    console.warn("deptcast: ignored a token in the address: the page that set it is not of an allowed origin");
    return;
  }
  signIn(token);
}

async function onDevSubmit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const fields = [$("dev-user"), $("dev-dept")];
  for (const field of fields) {
    field.value = field.value.trim();
    field.setAttribute("aria-invalid", String(!field.checkValidity()));
  }
  const bad = fields.find((f) => !f.checkValidity());
  if (bad) {
    $("signin-error").textContent = `${bad.labels[0].textContent}: use letters, digits, “.” and “-”, up to 64 characters.`;
    bad.focus();
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true;
  $("signin-error").textContent = "";
  try {
    signIn(await devToken($("dev-user").value, $("dev-dept").value, $("dev-role").value));
  } catch (err) {
    $("signin-error").textContent = `Sign-in failed: ${err.message}`;
  } finally {
    button.disabled = false;
  }
}

// ---- connection -------------------------------------------------------------------------

const STATE_TEXT = {
  [CONNECTING]: "Connecting…",
  [CONNECTED]: "Connected",
  [RECONNECTING]: "Connection lost: reconnecting…",
  [OFFLINE]: "Offline",
};

function setConnectionText(state, text) {
  $("conn").dataset.state = state;
  $("conn-text").textContent = text;
}

function showConnection(state, info) {
  let text = STATE_TEXT[state];
  if (state === RECONNECTING && info.goingAway) text = "Server restarting: reconnecting…";
  if ((state === CONNECTING || state === RECONNECTING) && !navigator.onLine) {
    // retrying is pointless until the device has a network again ("online" retries at once)
    setConnectionText(OFFLINE, "Offline: no network; reconnects when it is back");
    return;
  }
  if (state === OFFLINE && info.refusal) {
    text = info.refusal === TOKEN_EXPIRED
      ? "Offline: your sign-in has expired"
      : `Offline: sign-in refused (${info.refusal})`;
    if (info.refusal === INVALID_TOKEN && page.me) {
      // forged, or signed with another secret: nothing of that user stays on this computer
      dropCache(window.localStorage, page.me.dept, page.me.user);
      const me = page.me;
      forgetUser();
      page.me = me; // still named in the top bar: whose sign-in was refused
      saveToken(null);
    }
    tellHost({ type: "deptcast.token_expired", reason: info.refusal }, page.origins);
  }
  setConnectionText(state, text);
}

async function onJoin(session, details) {
  const me = {
    user: details.authid || page.me.user,
    dept: (details.authextra && details.authextra.dept) || page.me.dept,
    role: details.authrole || page.me.role,
  };
  if (!page.accepted || !sameUser(me, page.me)) accept(me);
  const recovery = page.recovery;
  const onEvent = (args) => {
    if (page.recovery === recovery && args && args.length) recovery.receive(args[0]);
  };
  // subscribe first, then catch up: nothing can fall between the two
  await recovery.join(
    (kwargs) => session.call("deptcast.history", [], kwargs),
    () => Promise.all(recovery.topics.map((topic) => session.subscribe(topic, onEvent))),
  );
  saveNow();
  // presence: events first, then the list (a change made while the list is on its way is
  // in it or comes after it); a node without presence leaves the note as it is
  const online = page.online;
  online.reset();
  const subscribed = await session.subscribe(`deptcast.presence.${me.dept}`, (args) => onPresence(session, online, args))
    .then(() => true, () => false);
  if (subscribed) refreshPresence(session, online);
}

// ---- timeline -----------------------------------------------------------------------------

/** Envelopes delivered by the recovery (or sent by this user): into the timeline. */
function show(envelopes) {
  const change = page.timeline.merge(envelopes);
  if (!change.added.length && !change.dropped.length) return;
  render(change);
  clearTimeout(page.saveTimer);
  page.saveTimer = setTimeout(saveNow, 250);
}

function saveNow() {
  clearTimeout(page.saveTimer);
  page.saveTimer = null;
  if (page.accepted && page.recovery && page.me) {
    saveCache(window.localStorage, page.me.dept, page.me.user, page.timeline, page.recovery.positions());
  }
}

/** Put added envelopes into the list (newest first) and remove dropped ones. */
function render({ added, dropped }) {
  const list = $("timeline");
  for (const id of dropped) {
    const li = page.items.get(id);
    if (li) li.remove();
    page.items.delete(id);
  }
  // newest first: each one's newer neighbour is then already in the list
  for (let i = added.length - 1; i >= 0; i -= 1) {
    const env = added[i];
    const li = messageItem(env);
    page.items.set(env.id, li);
    const newer = page.timeline.nextId(env.id);
    const newerItem = newer && page.items.get(newer);
    if (newerItem) newerItem.after(li);
    else list.prepend(li);
  }
  $("timeline-empty").hidden = page.timeline.size > 0;
}

function scopeLabel(env) {
  if (env.scope === "all") return "All";
  if (env.scope === "user") {
    const me = page.me;
    if (me && env.target === `${me.dept}_${me.user}`) return "Direct to you";
    const [dept, user] = String(env.target).split("_");
    return `Direct to ${user} (${dept})`;
  }
  return `Dept ${env.target}`;
}

function formatTime(ts) {
  const when = new Date(ts);
  const today = new Date();
  return when.toDateString() === today.toDateString()
    ? when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
    : when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function messageItem(env) {
  const li = el("li", `msg msg-${env.scope}`);
  li.dataset.id = env.id;
  li.dataset.scope = env.scope;
  const meta = el("p", "meta");
  meta.append(el("span", "scope", scopeLabel(env)));
  const from = el("span", "from", "from ");
  from.append(el("strong", "sender", env.sender || "?"));
  if (env.sender_dept) from.append(` (${env.sender_dept})`);
  meta.append(" ", from, " ");
  if (Number.isFinite(env.ts)) {
    const time = el("time", "ts", formatTime(env.ts));
    time.dateTime = new Date(env.ts).toISOString();
    meta.append(time);
  }
  li.append(meta, el("p", "text", env.message));
  return li;
}

// ---- send box -----------------------------------------------------------------------------

function setUpComposer(me) {
  const publisher = me.role === "publisher";
  $("to-all-choice").hidden = !publisher;
  $("to-dept-label").textContent = publisher ? "A department" : `My department (${me.dept})`;
  $("to-user-label").textContent = publisher ? "One person" : `One person in ${me.dept}`;
  const dept = $("to-dept");
  dept.value = me.dept;
  dept.readOnly = !publisher;
  $("to-user").value = "";
  $("message").value = "";
  $("send-status").textContent = "";
  $("send-error").textContent = "";
  const first = $("send-form").querySelector('input[name="to"][value="dept"]');
  first.checked = true;
  updateTargetFields();
}

function chosenScope() {
  return $("send-form").querySelector('input[name="to"]:checked').value;
}

function updateTargetFields() {
  const scope = chosenScope();
  const publisher = page.me && page.me.role === "publisher";
  // members always write to their own department; publishers pick one, except for All
  $("dept-field").hidden = scope === "all" || (!publisher && scope === "user");
  $("user-field").hidden = scope !== "user";
  $("to-user").required = scope === "user";
}

function describeTarget(scope, dept, user) {
  if (scope === "all") return "everyone";
  if (scope === "user") return `${user} (${dept})`;
  return `department ${dept}`;
}

async function onSend(event) {
  event.preventDefault();
  const status = $("send-status");
  const error = $("send-error");
  status.textContent = "";
  error.textContent = "";
  const scope = chosenScope();
  const dept = $("to-dept").value.trim();
  const user = $("to-user").value.trim();
  const message = $("message").value;
  const fields = [];
  if (scope === "dept" || scope === "user") fields.push($("to-dept"));
  if (scope === "user") fields.push($("to-user"));
  for (const f of fields) {
    f.value = f.value.trim();
    f.setAttribute("aria-invalid", String(!f.checkValidity()));
  }
  const bad = fields.find((f) => !f.checkValidity());
  if (bad) {
    error.textContent = `${bad.labels[0].textContent}: use letters, digits, “.” and “-”, up to 64 characters.`;
    bad.focus();
    return;
  }
  if (!message.trim()) {
    error.textContent = "Write a message first.";
    $("message").focus();
    return;
  }
  const session = page.link && page.link.session;
  if (!session || !session.isOpen || page.link.state !== CONNECTED) {
    error.textContent = "Not sent: not connected. Try again when the page says Connected.";
    return;
  }
  const to = scope === "all" ? "All" : scope === "user" ? `${dept}_${user}` : dept;
  const button = $("send");
  button.disabled = true;
  const recovery = page.recovery;
  try {
    const envelope = await session.call("deptcast.send", [to, message]);
    $("message").value = "";
    status.textContent = `Sent to ${describeTarget(scope, dept, user)}.`;
    // the sender sees what it sent: on its own topics like any event (once, in its place),
    // elsewhere (another department, another person) straight into its timeline
    if (recovery && page.recovery === recovery && !recovery.receive(envelope)) show([envelope]);
  } catch (err) {
    const uri = err && err.error ? err.error : "error";
    const detail = err && Array.isArray(err.args) && err.args.length ? String(err.args[0]) : String(err);
    error.textContent = `Not sent: ${detail} (${uri})`;
  } finally {
    button.disabled = false;
  }
}

// ---- presence (a node may not offer it: then the note stays) ---------------------------------

/** Ask who is online in the department and show it. */
async function refreshPresence(session, online) {
  if (!session.isOpen || online !== page.online) return;
  try {
    const answer = await session.call("deptcast.presence.online", [online.dept]);
    if (online === page.online && online.replace(answer)) showOnline();
  } catch (err) {
    if (online !== page.online) return;
    online.reset();
    $("online-note").textContent = "Who is online will show here once this node offers it.";
    $("online-list").replaceChildren();
  }
}

/** A deptcast.presence.<dept> event: {dept, user, online, count}. */
function onPresence(session, online, args) {
  if (online !== page.online) return;
  const outcome = online.apply(args && args[0]);
  if (outcome === "changed") showOnline();
  else if (outcome === "resync") refreshPresence(session, online);
}

function showOnline() {
  const users = page.online.sorted();
  $("online-note").textContent = `${users.length} online in ${page.online.dept}`;
  $("online-list").replaceChildren(...users.map((u) => el("li", "", u)));
}

// ---- start ----------------------------------------------------------------------------------

function start() {
  $("dev-form").addEventListener("submit", onDevSubmit);
  $("send-form").addEventListener("submit", onSend);
  $("send-form").addEventListener("change", (e) => {
    if (e.target.name === "to") updateTargetFields();
  });
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      $("send-form").requestSubmit();
    }
  });
  $("signout").addEventListener("click", () => signOut());
  window.addEventListener("message", onHostMessage);
  window.addEventListener("online", () => {
    if (!page.link) return;
    page.link.retryNow();
    showConnection(page.link.state, {});
  });
  window.addEventListener("offline", () => {
    if (page.link && page.link.state !== CONNECTED) showConnection(page.link.state, {});
  });
  window.addEventListener("pagehide", saveNow);
  window.addEventListener("hashchange", onFragment);

  const token = takeFragmentToken() || savedToken();
  if (token) signIn(token);
  else {
    showSignIn();
    offerSignIn();
  }
}

start();
