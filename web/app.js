// deptcast's reference page: sign in, one timeline (department, All, direct messages), a send
// box that offers only what the role may do, who is online, the connection state, and under each
// notice the user sent who has seen it. This file is the DOM and the wiring; it talks to the node
// only through the entry module deptcast.js (the Client other front ends use too), and the rules
// live in modules without a DOM:
//   deptcast.js  the connection, resume, token refresh, safe retries, receipts, presence
//   timeline.js  the timeline's order and the per-user cache
//   receipts.js  when a notice counts as seen, receipt counts and their line
//   signin.js    where a token may come from (and when to ask before using it)
//
// On a shared computer: a user's cached timeline is shown only once the node has accepted a
// token for that user (the token's claims are read unverified, so anyone could forge them),
// and dropped when the node refuses a token of that user as invalid, or revokes the user.

import { positionsFromEnvelopes } from "./catchup.js";
import {
  CONNECTED, CONNECTING, CONNECTION_LOST, Client, INVALID_TOKEN, NOT_CONNECTED, OFFLINE,
  RATE_LIMITED, RECONNECTING, STOPPED, TIMEOUT, UNAVAILABLE, isOwn, newKey, notOffered, topicsOf,
} from "./deptcast.js";
import { DELIVERED, PENDING, SeenRule, Throttle, mergeCounts, receiptSummary } from "./receipts.js";
import {
  HostTokenRequests, beginSignIn, claimsOf, devSignInOffered, devToken, fragmentDecision, savedToken, saveToken,
  signInUrl, takeFragment, takeSignInRequest, tellHost, tokenOrigins,
} from "./signin.js";
import { Timeline, loadCache, saveCache, dropCache } from "./timeline.js";

const $ = (id) => document.getElementById(id);

/** How many of the user's newest notices get their receipt counts asked at each connection
 * (older ones follow the live counts only). */
const RECEIPTS_ASKED = 20;
/** A notice's receipt line changes at most this often (receipt events may come in bursts). */
const RECEIPTS_REDRAW_MS = 500;
/** The list of who has not seen a notice is asked again at most this often while it is open. */
const WHO_REFRESH_MS = 2000;

const page = {
  token: null,
  me: null, // {user, dept, role}: from the token's claims until the node accepts it
  accepted: false, // the node accepted a token of ``me``: its cache may be shown
  client: null, // the deptcast Client of ``me``
  timeline: new Timeline(),
  items: new Map(), // id -> <li>
  saveTimer: null,
  origins: tokenOrigins(),
  asking: null, // a fragment token waiting for the user's yes
  draft: null, // {to, message, key}: the notice being sent, kept for a retry with the same key
  receipts: new Map(), // id of a notice the user sent -> {counts, lists}
  receiptsOff: false, // the node has no receipts
  redraw: new Throttle({ intervalMs: RECEIPTS_REDRAW_MS }),
  whoRefresh: new Throttle({ intervalMs: WHO_REFRESH_MS }),
  seen: new SeenRule(),
  seenTimer: null,
  observer: null, // an IntersectionObserver of the notices not seen yet
};

const requests = new HostTokenRequests({ origins: page.origins });
let devMode = null; // a promise: whether the node runs in quick-start mode

function quickStart() {
  if (!devMode) devMode = devSignInOffered();
  return devMode;
}

/** The page's token source for renewals: the quick-start endpoint mints one, else the host is
 * asked (signin.js). */
async function renewToken(held) {
  if (await quickStart()) return devToken(held.user, held.dept, held.role);
  return requests.request(held);
}

// ---- sign-in ------------------------------------------------------------------------------

function showSignIn(error = "") {
  $("app").hidden = true;
  $("who").hidden = true;
  $("signout").hidden = true;
  $("signin-again").hidden = true;
  $("confirm").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = error;
}

function showApp() {
  $("signin").hidden = true;
  $("confirm").hidden = true;
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
    if (page.client) console.warn("deptcast: ignored a sign-in that is not a deptcast token");
    else showSignIn("That sign-in is not a deptcast token.");
    return;
  }
  page.asking = null;
  const me = { user: claims.sub, dept: claims.dept, role: claims.role };
  if (page.client && sameUser(page.me, me) && page.me.role === me.role) {
    // a fresh token for the same user (the host renews it): handed to the open session, or
    // used for the next connection (and it brings a client that had stopped back)
    page.client.setToken(token);
    page.token = page.client.token;
    saveToken(page.token);
    return;
  }
  if (page.client) signOut({ keepCache: true, quiet: true });
  page.token = token;
  saveToken(token);
  page.me = me;
  page.accepted = false;
  $("who").textContent = `${me.user} · ${me.dept} · ${me.role}`;
  setUpComposer(me);
  clearTimeline();
  showApp();
  const client = new Client({ token, renewToken, positions: accept });
  page.client = client;
  const mine = (fn) => (...args) => {
    if (page.client === client) fn(...args);
  };
  client.on("state", mine(showConnection));
  client.on("ended", mine(onEnded));
  client.on("notices", mine(show));
  // one announcement per catch-up
  client.on("busy", mine((busy) => $("timeline").setAttribute("aria-busy", String(busy))));
  client.on("pruned", mine(onPruned));
  client.on("online", mine(showOnline));
  client.on("receipts", mine(onReceipts));
  client.on("token", mine(() => {
    page.token = client.token;
    saveToken(page.token);
  }));
  client.start().catch((err) => {
    if (page.client === client) setConnectionText(OFFLINE, `Offline: the page could not load its connection (${err.message})`);
  });
}

function signOut({ keepCache = false, quiet = false } = {}) {
  if (page.client) page.client.stop("signed out");
  page.client = null;
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
  page.accepted = false;
  page.token = null;
  page.me = null;
  page.draft = null;
  clearTimeline();
  showOnline({ users: null });
}

function clearTimeline() {
  page.timeline.clear();
  page.items.clear();
  page.receipts.clear();
  page.receiptsOff = false;
  page.redraw.clear();
  page.whoRefresh.clear();
  if (page.observer) page.observer.disconnect();
  page.seen = new SeenRule();
  page.seen.attention(hasAttention());
  clearTimeout(page.seenTimer);
  $("timeline").replaceChildren();
  $("timeline-empty").hidden = false;
  $("timeline-pruned").hidden = true;
}

/** The node accepted a token of ``me``: show its cached timeline, and resume from its positions
 * (the Client's ``positions`` callback). */
function accept(me) {
  const cached = loadCache(window.localStorage, me.dept, me.user);
  const positions = cached.positions
    || (cached.legacy ? positionsFromEnvelopes(cached.envelopes, topicsOf(me)) : null);
  page.me = { ...page.me, ...me };
  page.accepted = true;
  clearTimeline();
  render(page.timeline.merge(cached.envelopes));
  return positions;
}

function onPruned(reason) {
  // the node's retention removed messages after this page's position: it goes on from the
  // newest page (catchup.js); say so once, in words, not the node's reason
  if ($("timeline-pruned").hidden) console.info(`deptcast: ${reason || "deptcast.error.pruned"}`);
  $("timeline-pruned").hidden = false;
}

async function offerSignIn() {
  const dev = await quickStart();
  if (page.client || page.asking) return; // signed in meanwhile (e.g. by the host), or asking
  const issuer = signInUrl();
  $("dev-form").hidden = !dev;
  $("signin-wait").hidden = dev;
  $("signin-start").hidden = dev || !issuer;
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
  if (typeof data.token !== "string" || !data.token) return;
  if (!requests.answer(data)) signIn(data.token); // an answer to a renewal goes to the Client
}

/** A token in the fragment (at load, or set later): used, asked about, or ignored (signin.js). */
function onFragment() {
  const taken = takeFragment();
  if (!taken) return false;
  const decision = fragmentDecision({
    signedIn: Boolean(page.client), state: taken.state, pending: takeSignInRequest(), origins: page.origins,
  });
  if (decision === "ignore") {
    console.warn("deptcast: ignored a token in the address: the page that set it is not of an allowed origin");
  } else if (decision === "ask") {
    askBeforeSignIn(taken.token);
  } else {
    signIn(taken.token);
  }
  return true;
}

/** A token this tab did not ask for: a link from any site can carry one (login CSRF). */
function askBeforeSignIn(token) {
  const claims = claimsOf(token);
  if (!claims) {
    showSignIn("That sign-in is not a deptcast token.");
    return;
  }
  page.asking = token;
  $("signin").hidden = true;
  $("app").hidden = true;
  $("confirm").hidden = false;
  $("confirm-question").textContent = `Sign in as ${claims.sub} (${claims.dept})?`;
  $("confirm-yes").focus();
}

function onConfirm(yes) {
  const token = page.asking;
  page.asking = null;
  if (yes && token) {
    signIn(token);
    return;
  }
  $("confirm").hidden = true;
  if (page.client) showApp();
  else {
    showSignIn();
    offerSignIn();
  }
}

function onSignInStart() {
  const issuer = signInUrl();
  if (issuer) window.location.assign(beginSignIn(issuer, window.location.origin + window.location.pathname));
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
  if (state !== OFFLINE) $("signin-again").hidden = true;
  if (state === CONNECTED) askReceipts();
  setConnectionText(state, text);
}

/** The Client stopped by itself: the token ran out, was refused, or the user was revoked. */
function onEnded({ reason, uri }) {
  $("send-status").textContent = "";
  if (reason === "revoked" || uri === INVALID_TOKEN) {
    // revoked, or forged or signed with another secret: nothing of that user stays on this computer
    if (page.me) dropCache(window.localStorage, page.me.dept, page.me.user);
    const me = page.me;
    forgetUser();
    page.me = me; // still named in the top bar: whose sign-in ended
    saveToken(null);
  }
  if (reason === "revoked") {
    setConnectionText(OFFLINE, "Signed out: your access was revoked");
    tellHost({ type: "deptcast.revoked" }, page.origins);
  } else {
    setConnectionText(OFFLINE, reason === "expired" ? "Offline: your sign-in has expired" : `Offline: sign-in refused (${uri})`);
    tellHost({ type: "deptcast.token_expired", reason: uri }, page.origins);
  }
  $("signin-again").hidden = false;
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
  const positions = page.client && page.client.positions();
  if (page.accepted && positions && page.me) {
    saveCache(window.localStorage, page.me.dept, page.me.user, page.timeline, positions);
  }
}

/** Put added envelopes into the list (newest first) and remove dropped ones. */
function render({ added, dropped }) {
  const list = $("timeline");
  for (const id of dropped) {
    const li = page.items.get(id);
    if (li) {
      li.remove();
      if (page.observer) page.observer.unobserve(li);
    }
    page.items.delete(id);
    page.receipts.delete(id);
    page.seen.forget(id);
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
    if (isOwn(env, page.me)) watchReceipts(env.id);
    else watchSeen(li);
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
  if (isOwn(env, page.me)) li.append(receiptsBlock(env.id));
  return li;
}

// ---- who has seen the user's own notices ----------------------------------------------------
//
// Under each notice the user sent: "seen by 12 of 20 · delivered to 18" (hidden until the node
// answers), and a list of who has not seen it yet, asked for when opened; both follow the live
// counts of deptcast.receipts.<dept>_<user>. A node without receipts leaves them hidden.

function receiptsBlock(id) {
  const block = el("div", "receipts");
  block.hidden = true;
  const line = el("p", "receipt-line");
  line.setAttribute("aria-live", "polite");
  const who = el("details", "receipt-who");
  who.append(el("summary", "", "Who has not seen it"), el("div", "receipt-lists"));
  who.addEventListener("toggle", () => {
    if (who.open) loadWho(id);
  });
  block.append(line, who);
  return block;
}

/** A notice of the user's own is in the timeline: follow its receipts (counts asked if new). */
function watchReceipts(id) {
  if (page.receiptsOff || page.receipts.has(id)) return;
  page.receipts.set(id, { counts: null });
  if (page.client && page.client.state === CONNECTED) askCounts(id);
}

/** Connected (again): ask the counts of the newest of the user's notices (events may have been
 * missed meanwhile); older ones follow the live counts. */
function askReceipts() {
  if (page.receiptsOff) return;
  const ids = [...page.receipts.keys()].sort().reverse().slice(0, RECEIPTS_ASKED);
  for (const id of ids) askCounts(id);
}

async function askCounts(id) {
  const client = page.client;
  try {
    onReceipts(await client.receipts(id));
  } catch (err) {
    if (client !== page.client) return;
    if (notOffered(err.uri)) {
      page.receiptsOff = true; // a node without receipts: the blocks stay hidden
      page.receipts.clear();
    }
    // anything else (the connection went, a notice sent before receipts existed): the live
    // counts and the next connection may still bring them
  }
}

/** New counts of one of the user's notices: its line, at most every RECEIPTS_REDRAW_MS. */
function onReceipts(counts) {
  const entry = page.receipts.get(counts && counts.id);
  if (!entry) return;
  entry.counts = mergeCounts(entry.counts, counts);
  page.redraw.run(counts.id, () => drawReceipts(counts.id));
}

function drawReceipts(id) {
  const entry = page.receipts.get(id);
  const li = page.items.get(id);
  if (!entry || !entry.counts || !li) return;
  const block = li.querySelector(".receipts");
  block.hidden = false;
  block.querySelector(".receipt-line").textContent = receiptSummary(entry.counts);
  const who = block.querySelector(".receipt-who");
  who.hidden = entry.counts.seen >= entry.counts.audience;
  if (who.open) page.whoRefresh.run(id, () => loadWho(id));
}

/** Who has not seen a notice: the first page of those who have it, and of those who have not. */
async function loadWho(id) {
  const client = page.client;
  const li = page.items.get(id);
  if (!client || !li) return;
  const lists = li.querySelector(".receipt-lists");
  try {
    const [delivered, pending] = await Promise.all([
      client.recipients(id, DELIVERED), client.recipients(id, PENDING),
    ]);
    if (client !== page.client) return;
    lists.replaceChildren(
      whoList(id, DELIVERED, "Has it, not seen yet", delivered),
      whoList(id, PENDING, "Not delivered yet", pending),
    );
  } catch (err) {
    if (client === page.client) lists.replaceChildren(el("p", "hint", `Not available now (${err.uri || err})`));
  }
}

function whoList(id, state, title, answer) {
  const section = el("div", `who-${state}`);
  const list = el("ul", "who-list");
  section.append(el("p", "who-title", title), list);
  const more = el("button", "quiet more", "Show more");
  more.type = "button";
  const add = ({ users, next }) => {
    for (const u of users || []) {
      list.append(el("li", "", page.me && u.dept !== page.me.dept ? `${u.user} (${u.dept})` : u.user));
    }
    more.hidden = !next;
    more.onclick = async () => {
      more.disabled = true;
      try {
        add(await page.client.recipients(id, state, { after: next }));
      } catch (err) {
        // the button stays: try again
      } finally {
        more.disabled = false;
      }
    };
  };
  add(answer);
  if (!list.children.length) list.append(el("li", "hint", "nobody"));
  section.append(more);
  return section;
}

// ---- when the user has seen a notice -----------------------------------------------------
//
// receipts.js's SeenRule: visible for a second, without a break, while the tab is visible and
// focused. An IntersectionObserver says what is in view; the page's visibility and focus say
// whether the user is there.

function watchSeen(li) {
  if (!("IntersectionObserver" in window) || page.seen.isSeen(li.dataset.id)) return;
  if (!page.observer) {
    page.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        page.seen.visible(entry.target.dataset.id, entry.isIntersecting && entry.intersectionRatio >= 0.5);
      }
      planSeenCheck();
    }, { threshold: [0, 0.5, 1] });
  }
  page.observer.observe(li);
}

/** Whether the user is looking at the page: its tab is visible and has the focus. */
function hasAttention() {
  return document.visibilityState === "visible" && document.hasFocus();
}

/** Focus, blur or visibility changed. The event's type says what happened: inside a blur
 * handler ``document.hasFocus()`` may still say true. */
function onAttention(event) {
  let attending = hasAttention();
  if (event && event.type === "blur") attending = false;
  else if (event && event.type === "focus") attending = document.visibilityState === "visible";
  page.seen.attention(attending);
  planSeenCheck();
}

/** Check again when the next notice in view will have been seen. */
function planSeenCheck() {
  clearTimeout(page.seenTimer);
  const due = page.seen.nextDue();
  if (due !== null) page.seenTimer = setTimeout(checkSeen, due + 20);
}

function checkSeen() {
  const ids = page.seen.take();
  if (ids.length && page.client) {
    page.client.seen(ids);
    for (const id of ids) {
      const li = page.items.get(id);
      if (li && page.observer) page.observer.unobserve(li);
    }
  }
  planSeenCheck();
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
  const to = scope === "all" ? "All" : scope === "user" ? `${dept}_${user}` : dept;
  // one key per notice: sending the same text to the same place again (after it failed) is a
  // retry of that notice, which the node stores once whatever happened to the first try
  const same = page.draft && page.draft.to === to && page.draft.message === message;
  const draft = same ? page.draft : { to, message, key: newKey() };
  page.draft = draft;
  const client = page.client;
  const button = $("send");
  button.disabled = true;
  try {
    await client.send(to, message, { key: draft.key, onStatus: showSending });
    if (page.draft === draft) page.draft = null;
    if (client !== page.client) return;
    $("message").value = "";
    status.textContent = `Sent to ${describeTarget(scope, dept, user)}.`;
  } catch (err) {
    if (client !== page.client) return;
    status.textContent = "";
    error.textContent = `Not sent: ${sendFailure(err)}`;
  } finally {
    button.disabled = false;
  }
}

/** Why a send is retried, in words. */
const RETRY_REASON = {
  [UNAVAILABLE]: "the node is busy",
  [RATE_LIMITED]: "sending too fast",
  [CONNECTION_LOST]: "the connection was lost",
  [NOT_CONNECTED]: "not connected",
  [TIMEOUT]: "no answer",
};

function showSending(s) {
  const status = $("send-status");
  if (s.state === "sending") status.textContent = s.attempt > 1 ? `Sending… (try ${s.attempt})` : "Sending…";
  else if (s.state === "retrying") {
    const reason = RETRY_REASON[s.error.uri] || s.error.uri;
    status.textContent = `Sending… (${reason}: trying again in ${Math.max(1, Math.round(s.retryIn / 1000))} s)`;
  }
}

/** The end of a send that failed, in words: the node's own text, or what the page knows. */
function sendFailure(err) {
  if (err.uri === NOT_CONNECTED) return "no connection to the node. Send again when the page says Connected.";
  if (err.uri === STOPPED) return "this page is signed out. Sign in again, then send it again.";
  if (RETRY_REASON[err.uri]) return `${RETRY_REASON[err.uri]}, after several tries. Send again to retry it (${err.uri}).`;
  return `${err.detail || err.message} (${err.uri})`;
}

// ---- presence (a node may not offer it: then the note stays) ---------------------------------

/** Who is online in the department, from the Client: ``{dept, users}`` (users null: not offered). */
function showOnline({ dept, users }) {
  if (!users) {
    $("online-note").textContent = "Who is online will show here once this node offers it.";
    $("online-list").replaceChildren();
    return;
  }
  $("online-note").textContent = `${users.length} online in ${dept}`;
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
  $("signin-again").addEventListener("click", () => signOut({ keepCache: true }));
  $("confirm-yes").addEventListener("click", () => onConfirm(true));
  $("confirm-no").addEventListener("click", () => onConfirm(false));
  $("signin-start").addEventListener("click", onSignInStart);
  window.addEventListener("message", onHostMessage);
  window.addEventListener("online", () => {
    if (!page.client) return;
    page.client.retryNow();
    showConnection(page.client.state, {});
  });
  window.addEventListener("offline", () => {
    if (page.client && page.client.state !== CONNECTED) showConnection(page.client.state, {});
  });
  window.addEventListener("pagehide", saveNow);
  window.addEventListener("hashchange", onFragment);
  document.addEventListener("visibilitychange", onAttention);
  window.addEventListener("focus", onAttention);
  window.addEventListener("blur", onAttention);
  onAttention();

  if (onFragment()) {
    if (!page.client && !page.asking) offerSignIn(); // not a deptcast token: said, and the offer stands
    return;
  }
  const token = savedToken();
  if (token) signIn(token);
  else {
    showSignIn();
    offerSignIn();
  }
}

start();
