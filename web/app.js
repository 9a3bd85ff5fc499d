// deptcast's reference page: sign in, one timeline (department, All, direct messages),
// a send box that offers only what the role may do, and the connection state.
//
// Gap-free catch-up: on every join the page first subscribes to its three topics, then asks
// deptcast.history for everything after the newest id it holds (a little before, see
// timeline.js), page by page; with nothing cached (a first visit on this browser) it asks
// once for the newest page instead (``latest: true``) and pages forward from there. Events
// that arrive meanwhile are merged too; the timeline keeps each id once, sorted. It is cached
// per user in localStorage, so a reload shows what was seen and asks only for what came after.
//
// While connected, each topic's ``seq`` must grow by one: a jump means an event was missed
// (in a cluster, a link between two nodes that dropped while both stayed up). If the gap is
// still open after a short grace period (events relayed by different nodes may arrive out of
// order), the page reads history from the newest message it had before the gap.

import {
  Timeline, SeqTracker, HISTORY_PAGE, GAP_GRACE_MS, compareIds,
  cacheKey, loadCache, saveCache, dropCache,
} from "./timeline.js";
import { Link, nodeUrl, CONNECTED, CONNECTING, RECONNECTING, OFFLINE } from "./link.js";
import {
  claimsOf, takeFragmentToken, savedToken, saveToken, tokenOrigins, tellHost,
  devSignInOffered, devToken,
} from "./signin.js";

const REALM = "deptcast";
const PRESENCE_REFRESH_MS = 30_000;
const $ = (id) => document.getElementById(id);

const page = {
  token: null,
  me: null, // {user, dept, role}
  link: null,
  timeline: new Timeline(),
  seqs: new SeqTracker(), // per topic: the highest seq seen, and what is missing below it
  gapTimer: null,
  reading: null, // the history read under way (one at a time), or null
  items: new Map(), // id -> <li>
  cacheKey: null,
  saveTimer: null,
  presenceTimer: null,
  online: null, // the users online in the department (a Set), once the node has answered
  origins: tokenOrigins(),
};

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
  return a && b && a.user === b.user && a.dept === b.dept;
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
  setIdentity(me);
  showApp();
  page.link = new Link({
    url: nodeUrl(),
    realm: REALM,
    token: () => page.token,
    onJoin,
    onState: showConnection,
  });
  page.link.start();
}

function signOut({ keepCache = false, quiet = false } = {}) {
  if (page.link) page.link.stop("signed out");
  page.link = null;
  clearInterval(page.presenceTimer);
  page.online = null;
  if (!keepCache && page.cacheKey) dropCache(window.localStorage, page.cacheKey);
  clearTimeout(page.saveTimer);
  clearTimeout(page.gapTimer);
  page.gapTimer = null;
  page.seqs.clear();
  page.cacheKey = null;
  page.token = null;
  page.me = null;
  saveToken(null);
  page.timeline.clear();
  page.items.clear();
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = false;
  if (!quiet) {
    showSignIn();
    setConnectionText(OFFLINE, "Not signed in");
    offerSignIn();
  }
}

/** Show who is signed in, set up the send box, and load this user's cached timeline. */
function setIdentity(me) {
  page.me = me;
  $("who").textContent = `${me.user} · ${me.dept} · ${me.role}`;
  setUpComposer(me);
  page.cacheKey = cacheKey(me.dept, me.user);
  page.timeline.clear();
  page.items.clear();
  $("timeline").replaceChildren();
  clearTimeout(page.gapTimer);
  page.gapTimer = null;
  page.seqs = new SeqTracker(topicsOf(me));
  const cached = loadCache(window.localStorage, page.cacheKey);
  // a hole in the cache is a message missed on an earlier visit: the first catch-up fills it
  page.seqs.observe(cached);
  render(page.timeline.merge(cached));
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
  if ((state === CONNECTING || state === RECONNECTING) && !navigator.onLine) {
    // retrying is pointless until the device has a network again ("online" retries at once)
    setConnectionText(OFFLINE, "Offline: no network; reconnects when it is back");
    return;
  }
  if (state === OFFLINE && info.refusal) {
    text = info.refusal === "deptcast.error.token_expired"
      ? "Offline: your sign-in has expired"
      : `Offline: sign-in refused (${info.refusal})`;
    tellHost({ type: "deptcast.token_expired", reason: info.refusal }, page.origins);
  }
  setConnectionText(state, text);
  if (state !== CONNECTED) {
    clearInterval(page.presenceTimer);
    page.presenceTimer = null;
  }
}

async function onJoin(session, details) {
  const me = {
    user: details.authid || page.me.user,
    dept: (details.authextra && details.authextra.dept) || page.me.dept,
    role: details.authrole || page.me.role,
  };
  if (!sameUser(me, page.me) || me.role !== page.me.role) setIdentity(me);
  const firstVisit = page.timeline.size === 0; // nothing cached, nothing seen yet
  const onEvent = (args) => receive(args && args.length ? [args[0]] : []);
  // subscribe first, then catch up: nothing can fall between the two
  await Promise.all(topicsOf(me).map((topic) => session.subscribe(topic, onEvent)));
  if (firstVisit) {
    await oneReadAtATime(() => readHistory(session, { latest: true }));
  } else {
    let after = page.timeline.catchUpAfter();
    const gapAfter = page.seqs.gapAfter(); // a gap not filled before the connection was lost
    if (after !== null && gapAfter !== null && compareIds(gapAfter, after) < 0) after = gapAfter;
    await oneReadAtATime(() => readHistory(session, { after }));
  }
  clearInterval(page.presenceTimer);
  page.presenceTimer = null;
  // events first, then the list: a change made while the list is on its way is not lost
  await session.subscribe(`deptcast.presence.${me.dept}`, onPresence).catch(() => {});
  // poll only where the node offers presence; a refusal ends it for this session
  refreshPresence(session).then((offered) => {
    if (offered && session.isOpen && page.link && page.link.session === session) {
      page.presenceTimer = setInterval(() => {
        refreshPresence(session).then((ok) => ok || clearInterval(page.presenceTimer));
      }, PRESENCE_REFRESH_MS);
    }
  });
}

/**
 * Read deptcast.history page by page until an empty page, merging what comes: after id
 * ``after`` (null: from the start), or first the newest page (``latest``: nothing cached).
 * Gaps open before the read are closed by it: history holds every message.
 */
async function readHistory(session, { after = null, latest = false } = {}) {
  const highs = latest ? new Map() : page.seqs.highs();
  const list = $("timeline");
  list.setAttribute("aria-busy", "true"); // one announcement for a catch-up, not one per message
  try {
    let kwargs = latest ? { limit: HISTORY_PAGE, latest: true } : { after, limit: HISTORY_PAGE };
    for (;;) {
      const rows = await session.call("deptcast.history", [], kwargs);
      if (!Array.isArray(rows) || rows.length === 0) break;
      receive(rows);
      kwargs = { after: rows[rows.length - 1].id, limit: HISTORY_PAGE };
    }
  } finally {
    list.setAttribute("aria-busy", "false");
  }
  page.seqs.settle(highs);
  saveNow();
}

/** Run ``read`` after the history read under way, if any: one read at a time. */
function oneReadAtATime(read) {
  const run = (page.reading || Promise.resolve()).catch(() => {}).then(read);
  page.reading = run;
  const done = () => {
    if (page.reading === run) page.reading = null;
  };
  run.then(done, done);
  return run;
}

function scheduleGapFill(delay = GAP_GRACE_MS) {
  if (page.gapTimer) return;
  page.gapTimer = setTimeout(fillGaps, delay);
}

/** The grace period is over: read history for the gaps still open. */
async function fillGaps() {
  page.gapTimer = null;
  if (page.reading) await page.reading.catch(() => {}); // a catch-up under way may close them
  if (page.gapTimer || !page.seqs.hasGaps) return;
  const session = page.link && page.link.session;
  // not connected: the next join reads from before the gap
  if (!session || !session.isOpen) return;
  const gaps = page.seqs.gaps();
  console.info(`deptcast: missed events (seq ${JSON.stringify(gaps)}): reading them from history`);
  try {
    await oneReadAtATime(() => {
      const after = page.seqs.gapAfter(); // null: closed while another read went on
      return after === null ? undefined : readHistory(session, { after });
    });
  } catch (err) {
    console.warn(`deptcast: reading missed events failed: ${err && err.error ? err.error : err}`);
    if (page.seqs.hasGaps && session.isOpen) scheduleGapFill(5 * GAP_GRACE_MS);
  }
}

// ---- timeline -----------------------------------------------------------------------------

function receive(envelopes) {
  if (page.seqs.observe(envelopes)) scheduleGapFill();
  const change = page.timeline.merge(envelopes);
  if (!change.added.length) return;
  render(change);
  clearTimeout(page.saveTimer);
  page.saveTimer = setTimeout(saveNow, 250);
}

function saveNow() {
  clearTimeout(page.saveTimer);
  if (page.cacheKey) saveCache(window.localStorage, page.cacheKey, page.timeline);
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
  if (env.scope === "user") return "Direct to you";
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
  try {
    await session.call("deptcast.send", [to, message]);
    $("message").value = "";
    status.textContent = `Sent to ${describeTarget(scope, dept, user)}.`;
  } catch (err) {
    const uri = err && err.error ? err.error : "error";
    const detail = err && Array.isArray(err.args) && err.args.length ? String(err.args[0]) : String(err);
    error.textContent = `Not sent: ${detail} (${uri})`;
  } finally {
    button.disabled = false;
  }
}

// ---- presence (the procedure may not exist yet: then the note stays) ----------------------

/** Show who is online in the department; false if the node does not answer. */
async function refreshPresence(session) {
  if (!page.me || !session.isOpen) return false;
  try {
    const online = await session.call("deptcast.presence.online", [page.me.dept]);
    const users = Array.isArray(online && online.users) ? online.users : [];
    page.online = new Set(users.map(String));
    showOnline();
    return true;
  } catch (err) {
    page.online = null;
    $("online-note").textContent = "Who is online will show here once this node offers it.";
    $("online-list").replaceChildren();
    return false;
  }
}

/** A deptcast.presence.<dept> event: {dept, user, online, count}. */
function onPresence(args) {
  const event = args && args[0];
  if (!page.online || !page.me || !event || event.dept !== page.me.dept || typeof event.user !== "string") return;
  if (event.online === true) page.online.add(event.user);
  else if (event.online === false) page.online.delete(event.user);
  else return;
  showOnline();
}

function showOnline() {
  const users = [...page.online].sort();
  $("online-note").textContent = `${users.length} online in ${page.me.dept}`;
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
  window.addEventListener("hashchange", () => {
    const token = takeFragmentToken();
    if (token) signIn(token);
  });

  const token = takeFragmentToken() || savedToken();
  if (token) signIn(token);
  else {
    showSignIn();
    offerSignIn();
  }
}

start();
