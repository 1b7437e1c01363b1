// The sale console. Plain JavaScript, no build step, nothing fetched from
// elsewhere. The admin token lives in this tab's sessionStorage and goes out
// as an Authorization header (no cookie, so no cross-site request can use
// it); the live feed is the Server-Sent Events stream read with fetch, since
// EventSource cannot send a header. Data is only ever written with
// textContent, never as HTML.
"use strict";

const TOKEN_KEY = "flashsale.adminToken";
const $ = (id) => document.getElementById(id);
const view = { q: "", page: 0, sort: "sku", pages: 1 };
let stream = null; // the AbortController of the open feed
let reconnect = null;
const rows = new Map(); // sku -> row elements

function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }

function authHeaders(extra) {
  return Object.assign({ Authorization: "Bearer " + token() }, extra || {});
}

function showLogin(message) {
  stop();
  sessionStorage.removeItem(TOKEN_KEY);
  $("main").hidden = true;
  $("signout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("conn").textContent = "not connected";
  $("token").focus();
}

function showMain() {
  $("login").hidden = true;
  $("main").hidden = false;
  $("signout").hidden = false;
  connect();
}

function stop() {
  if (stream) { stream.abort(); stream = null; }
  if (reconnect) { clearTimeout(reconnect); reconnect = null; }
}

// connect opens the feed for the current view; any change of view reopens it.
async function connect() {
  stop();
  const ctl = new AbortController();
  stream = ctl;
  const qs = new URLSearchParams({ q: view.q, page: String(view.page), sort: view.sort });
  $("conn").textContent = "connecting…";
  try {
    const resp = await fetch("/admin/v1/console/events?" + qs, {
      headers: authHeaders({ Accept: "text/event-stream" }), signal: ctl.signal, cache: "no-store",
    });
    if (resp.status === 401) { showLogin("That token was refused."); return; }
    if (!resp.ok || !resp.body) throw new Error("HTTP " + resp.status);
    $("conn").textContent = "live";
    const reader = resp.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let end;
      while ((end = buf.indexOf("\n\n")) >= 0) {
        const event = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
        if (data) render(JSON.parse(data));
      }
    }
  } catch (err) {
    if (ctl.signal.aborted) return;
    $("conn").textContent = "disconnected (" + err.message + "), retrying";
  }
  if (stream === ctl) {
    $("conn").textContent = "reconnecting…";
    reconnect = setTimeout(connect, 2000);
  }
}

function fmtRate(x) { return x == null ? "–" : x >= 10 ? x.toFixed(0) : x.toFixed(2); }
function fmtTime(s) { return s ? new Date(s).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : ""; }

function pill(id, text, cls) {
  const el = $(id);
  el.textContent = text;
  el.className = "pill " + cls;
}

function render(u) {
  $("conn").textContent = "live · " + fmtTime(u.at);
  pill("redis", "Redis " + (u.redis_up ? "up" : "DOWN"), u.redis_up ? "up" : "down");
  if (u.redis_error) $("redis").title = u.redis_error;
  const h = u.health;
  if (h) {
    pill("mysql", "MySQL " + (h.database_up ? "up" : "DOWN"), h.database_up ? "up" : "down");
    if (h.sync.enabled) {
      const s = h.sync;
      const bad = s.dead_letters > 0 || s.lag_seconds > 30;
      pill("sync", "sync backlog " + s.backlog + " · lag " + s.lag_seconds.toFixed(1) + "s · dead letters " + s.dead_letters,
        s.dead_letters > 0 ? "down" : bad ? "warn" : "up");
    } else {
      pill("sync", "sync off in this process", "");
    }
    pill("recovery", h.rebuilding > 0 ? "rebuilding " + h.rebuilding + " item(s)" : "recovery idle (" + h.restored + " rebuilt)",
      h.rebuilding > 0 ? "warn" : "up");
  }
  $("t-items").textContent = u.items;
  $("t-soldout").textContent = u.sold_out;
  $("t-grants").textContent = u.rates ? fmtRate(u.grants_per_s) : "–";
  $("t-refusals").textContent = u.rates ? fmtRate(u.refusals_per_s) : "–";
  $("t-window").textContent = u.rates ? "rates over the last " + Math.round(u.rate_window_s) + " s" : "rates need FLASHSALE_METRICS=true";
  view.pages = u.pages;
  view.page = u.page;
  $("pageinfo").textContent = (u.page + 1) + " / " + u.pages + " (" + u.matched + ")";
  $("prev").disabled = u.page <= 0;
  $("next").disabled = u.page >= u.pages - 1;

  const list = $("items");
  const items = u.page_items || [];
  const keep = new Set(items.map((it) => it.sku));
  for (const [sku, r] of rows) {
    if (!keep.has(sku)) { r.root.remove(); rows.delete(sku); }
  }
  items.forEach((it, i) => {
    let r = rows.get(it.sku);
    if (!r) { r = makeRow(it.sku); rows.set(it.sku, r); }
    if (list.children[i] !== r.root) list.insertBefore(r.root, list.children[i] || null);
    updateRow(r, it, u);
  });
  $("empty").hidden = items.length > 0;
}

function el(tag, cls, parent) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (parent) parent.appendChild(e);
  return e;
}

const SVG = "http://www.w3.org/2000/svg";

function makeRow(sku) {
  const r = {};
  r.root = el("article", "item");
  r.root.dataset.sku = sku;
  const id = el("div", "id", r.root);
  r.sku = el("b", "", id);
  r.phase = el("span", "phase", id);
  r.name = el("div", "name", id);
  r.window = el("div", "window", id);
  const mid = el("div", "", r.root);
  r.bar = el("div", "bar", mid);
  r.bar.setAttribute("role", "img");
  r.sold = el("span", "seg-sold", r.bar);
  r.reserved = el("span", "seg-reserved", r.bar);
  r.available = el("span", "seg-available", r.bar);
  r.nums = el("div", "nums", mid);
  r.soldout = el("div", "soldout", mid);
  const rates = el("div", "rates", r.root);
  r.rates = el("div", "rate-text", rates);
  r.svg = document.createElementNS(SVG, "svg");
  r.svg.setAttribute("viewBox", "0 0 100 24");
  r.svg.setAttribute("preserveAspectRatio", "none");
  r.gline = document.createElementNS(SVG, "polyline");
  r.gline.setAttribute("class", "g");
  r.rline = document.createElementNS(SVG, "polyline");
  r.rline.setAttribute("class", "r");
  r.svg.append(r.rline, r.gline);
  rates.appendChild(r.svg);
  const actions = el("div", "actions", r.root);
  const restock = el("button", "restock", actions);
  restock.type = "button";
  restock.textContent = "Restock…";
  restock.addEventListener("click", () => fillForm(sku));
  const end = el("button", "end danger", actions);
  end.type = "button";
  end.textContent = "End sale now";
  end.addEventListener("click", () => endSale(sku));
  r.end = end;
  return r;
}

function points(series) {
  const max = Math.max(1, ...series);
  const n = series.length;
  return series.map((v, i) => ((i / Math.max(1, n - 1)) * 100).toFixed(1) + "," + (23 - (v / max) * 22).toFixed(1)).join(" ");
}

function updateRow(r, it, u) {
  r.sku.textContent = it.sku;
  r.phase.textContent = it.phase.replace("_", " ");
  r.phase.className = "phase " + it.phase;
  r.name.textContent = it.name;
  r.window.textContent = it.starts_at || it.ends_at
    ? "window " + (fmtTime(it.starts_at) || "open") + " → " + (fmtTime(it.ends_at) || "no end")
    : "no sale window";
  const pct = (n) => (it.stock > 0 ? (100 * Math.max(0, n)) / it.stock : 0).toFixed(2) + "%";
  r.sold.style.width = pct(it.sold);
  r.reserved.style.width = pct(it.reserved);
  r.available.style.width = pct(it.available);
  r.bar.setAttribute("aria-label", it.sold + " sold, " + it.reserved + " reserved, " + it.available + " available of " + it.stock);
  r.nums.textContent = "available " + it.available + " · reserved " + it.reserved + " · sold " + it.sold + " / stock " + it.stock;
  r.nums.dataset.available = it.available;
  r.nums.dataset.reserved = it.reserved;
  r.nums.dataset.sold = it.sold;
  r.soldout.textContent = it.sold_out_at ? "sold out " + (it.sold_out_before ? "before " : "at ") + fmtTime(it.sold_out_at) : "";
  if (u.rates) {
    r.rates.textContent = fmtRate(it.grants_per_s) + " grants/s · " + fmtRate(it.refusals_per_s) + " refusals/s";
    r.rates.dataset.grants = it.grants_per_s;
    r.rates.dataset.refusals = it.refusals_per_s;
    r.gline.setAttribute("points", points(it.grants_series || []));
    r.rline.setAttribute("points", points(it.refusals_series || []));
  } else {
    r.rates.textContent = "rates off";
  }
  r.end.disabled = it.phase === "ended";
}

// ask shows the confirmation dialog; it resolves true on Confirm.
function ask(text) {
  return new Promise((resolve) => {
    $("confirm-text").textContent = text;
    $("confirm").hidden = false;
    const done = (ok) => {
      $("confirm").hidden = true;
      $("confirm-yes").onclick = $("confirm-no").onclick = null;
      resolve(ok);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    $("confirm-yes").focus();
  });
}

async function api(method, path, body) {
  const resp = await fetch(path, {
    method, cache: "no-store",
    headers: authHeaders(body ? { "Content-Type": "application/json" } : {}),
    body: body ? JSON.stringify(body) : undefined,
  });
  if (resp.status === 401) { showLogin("That token was refused."); throw new Error("unauthorized"); }
  const doc = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((doc.code || resp.status) + ": " + (doc.detail || doc.title || ""));
  return { status: resp.status, doc };
}

function say(text, bad) {
  $("seed-result").textContent = text;
  $("seed-result").className = bad ? "error" : "";
}

async function fillForm(sku) {
  try {
    const { doc } = await api("GET", "/v1/items/" + encodeURIComponent(sku));
    $("f-sku").value = doc.sku;
    $("f-name").value = doc.name;
    $("f-stock").value = doc.stock;
    $("f-limit").value = doc.per_user_limit;
    $("f-hold").value = doc.hold_seconds;
    $("f-starts").value = doc.starts_at || "";
    $("f-ends").value = doc.ends_at || "";
    $("f-stock").focus();
  } catch (err) { say("could not read " + sku + ": " + err.message, true); }
}

function seedBody() {
  const num = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  const body = { stock: num("f-stock"), name: $("f-name").value };
  if ($("f-limit").value !== "") body.per_user_limit = num("f-limit");
  if ($("f-hold").value !== "") body.hold_seconds = num("f-hold");
  if ($("f-starts").value.trim() !== "") body.starts_at = $("f-starts").value.trim();
  if ($("f-ends").value.trim() !== "") body.ends_at = $("f-ends").value.trim();
  return body;
}

async function submitSeed(ev) {
  ev.preventDefault();
  const sku = $("f-sku").value.trim();
  const body = seedBody();
  if (!(await ask("Seed " + sku + " with stock " + body.stock + "? This replaces its offer."))) return;
  try {
    const { status, doc } = await api("PUT", "/admin/v1/items/" + encodeURIComponent(sku), body);
    say((status === 201 ? "created " : "updated ") + doc.sku + ": stock " + doc.stock + ", available " + doc.available);
  } catch (err) { say("seed of " + sku + " refused: " + err.message, true); }
}

// endSale sets the item's window to end now, keeping the rest of its offer
// (a seed replaces the whole offer, so it is read first).
async function endSale(sku) {
  if (!(await ask("End the sale of " + sku + " now? Buyers are refused from this moment."))) return;
  try {
    const { doc } = await api("GET", "/v1/items/" + encodeURIComponent(sku));
    const now = new Date();
    const body = { stock: doc.stock, name: doc.name, per_user_limit: doc.per_user_limit, hold_seconds: doc.hold_seconds, ends_at: now.toISOString() };
    if (doc.starts_at) {
      // A window must end after it starts: a sale not yet started is ended
      // by starting it a millisecond before it ends.
      body.starts_at = new Date(doc.starts_at) < now ? doc.starts_at : new Date(now.getTime() - 1).toISOString();
    }
    await api("PUT", "/admin/v1/items/" + encodeURIComponent(sku), body);
    say("sale of " + sku + " ended at " + fmtTime(body.ends_at));
  } catch (err) { say("could not end " + sku + ": " + err.message, true); }
}

let searchTimer = null;
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    showMain();
  });
  $("signout").addEventListener("click", () => showLogin(""));
  $("search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => { view.q = $("search").value; view.page = 0; connect(); }, 300);
  });
  $("sort").addEventListener("change", () => { view.sort = $("sort").value; view.page = 0; connect(); });
  $("prev").addEventListener("click", () => { if (view.page > 0) { view.page--; connect(); } });
  $("next").addEventListener("click", () => { if (view.page < view.pages - 1) { view.page++; connect(); } });
  $("seed-form").addEventListener("submit", submitSeed);
  if (token()) showMain(); else showLogin("");
});
