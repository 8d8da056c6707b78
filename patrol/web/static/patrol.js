// Patrol's GUI script: live updates, filtering, confirmations and log follow.
// Every page works without it. Text from the server is only ever set with
// textContent, never as HTML, so names and log lines cannot become markup.
"use strict";

document.documentElement.classList.add("js");

const POLL_MS = 1000; // the fallback, while the event stream is down
const STATS_MS = 15000; // uptime, CPU and memory, re-read while the stream is up
// States whose end no event may announce (a service's stop ends in "disabled" quietly):
// while an item shows one, the page re-reads the state once a POLL_MS later
const TRANSIENT = new Set(["starting", "stopping", "restarting"]);
const FOLLOW_MS = 1000;
const TIMEOUT_MS = 5000;
const MAX_LOG_CHARS = 2000000;

async function getJSON(url) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  try {
    const response = await fetch(url, { signal: controller.signal, cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) window.location.reload(); // the session ended: the reload goes to the login page
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    return await response.json();
  } finally {
    clearTimeout(timer);
  }
}

function setConnection(up, text) {
  const badge = document.getElementById("connection");
  if (!badge) return;
  badge.hidden = false;
  if (badge.textContent !== text) badge.textContent = text; // unchanged text is not re-announced
  badge.classList.toggle("live", up);
  badge.classList.toggle("down", !up);
  document.body.classList.toggle("disconnected", !up);
}

// -- live updates of the dashboard and detail pages ----------------------------------

function condition(expr, item) {
  const negate = expr.startsWith("!");
  const value = Boolean(item[negate ? expr.slice(1) : expr]);
  return negate ? !value : value;
}

function applyItem(element, item) {
  element.dataset.state = item.state;
  for (const field of element.querySelectorAll("[data-field]")) {
    const value = item[field.dataset.field];
    if (value === undefined) continue;
    if (field.textContent !== value) field.textContent = value;
    if (field.dataset.field === "label") field.dataset.state = item.state;
  }
  for (const button of element.querySelectorAll("[data-if]")) {
    button.hidden = !condition(button.dataset.if, item);
  }
}

function itemsChanged(items) {
  const table = document.getElementById("items");
  if (table) {
    const shown = [...table.tBodies[0].rows].map((row) => row.dataset.key).sort();
    return shown.join(" ") !== Object.keys(items).sort().join(" ");
  }
  return [...document.querySelectorAll("[data-key]")].some((element) => !(element.dataset.key in items));
}

function showStateFileFault(patrol) {
  const banner = document.getElementById("state-file-fault");
  if (!banner) return;
  banner.hidden = !patrol.state_file_error;
  for (const key of ["state_file_error", "state_file_since"]) {
    const element = banner.querySelector(`[data-patrol=${key}]`);
    if (element && element.textContent !== (patrol[key] || "")) element.textContent = patrol[key] || "";
  }
}

function startLive(url, streamUrl) {
  let failures = 0;
  let streaming = false; // the event stream is open: no polling
  let pollTimer = null;
  let statsTimer = null;
  let settleTimer = null;
  const instance = document.body.dataset.instance;
  const dashboard = Boolean(document.getElementById("items"));

  // Apply a whole state (state.json); false when the page reloads instead.
  function apply(state) {
    if (instance && state.patrol.instance !== instance) {
      location.reload(); // Patrol restarted: new items, new form tokens
      return false;
    }
    if (itemsChanged(state.items)) {
      location.reload(); // the configuration was reloaded: other rows
      return false;
    }
    showPatrol(state.patrol);
    for (const element of document.querySelectorAll("[data-key]")) {
      const item = state.items[element.dataset.key];
      if (item) applyItem(element, item);
    }
    filterRows();
    if (Object.values(state.items).some((item) => TRANSIENT.has(item.state))) settleSoon();
    return true;
  }

  function settleSoon() {
    if (!streaming || settleTimer) return;
    settleTimer = setTimeout(() => { settleTimer = null; if (streaming) refresh(); }, POLL_MS);
  }

  function showPatrol(patrol) {
    const live = streaming ? "Live" : "Live · polling";
    setConnection(true, patrol.shutdown ? `${live} · shutting down` : live);
    const uptime = document.querySelector("[data-patrol=uptime]");
    if (uptime && patrol.uptime) uptime.textContent = patrol.uptime;
    showStateFileFault(patrol);
  }

  async function refresh() {
    try {
      const state = await getJSON(url);
      failures = 0;
      apply(state);
    } catch (error) {
      failures += 1;
      setConnection(false, "Disconnected from Patrol · retrying");
    }
  }

  // -- the fallback: poll while the stream is down --
  async function poll() {
    pollTimer = null;
    if (streaming) return;
    if (!document.hidden) await refresh();
    schedulePoll();
  }
  function schedulePoll() {
    if (streaming || pollTimer) return;
    pollTimer = setTimeout(poll, failures ? Math.min(POLL_MS * failures, 10000) : POLL_MS);
  }

  // -- the stream: rows pushed as items change --
  function onItem(event) {
    const data = JSON.parse(event.data);
    const elements = document.querySelectorAll(`[data-key="${CSS.escape(data.key)}"]`);
    if (data.gone ? elements.length : (dashboard && !elements.length)) {
      location.reload(); // an item came or went with a reload of the configuration
      return;
    }
    for (const element of elements) applyItem(element, data.item);
    filterRows();
    if (TRANSIENT.has(data.item.state)) settleSoon();
  }
  function openStream() {
    if (!streamUrl || typeof EventSource !== "function") return false;
    const source = new EventSource(streamUrl);
    source.addEventListener("open", () => {
      streaming = true;
      if (pollTimer) clearTimeout(pollTimer);
      pollTimer = null;
      refresh(); // what changed while it was down
      if (!statsTimer) statsTimer = setInterval(() => { if (!document.hidden) refresh(); }, STATS_MS);
    });
    source.addEventListener("item", onItem);
    source.addEventListener("patrol", (event) => showPatrol(JSON.parse(event.data)));
    source.addEventListener("error", () => {
      streaming = false; // the browser reconnects by itself; poll meanwhile
      if (statsTimer) clearInterval(statsTimer);
      statsTimer = null;
      if (source.readyState === EventSource.CLOSED) source.close();
      if (!pollTimer) poll();
    });
    return true;
  }

  document.addEventListener("visibilitychange", () => { if (!document.hidden) refresh(); });
  if (!openStream()) poll();
}

// -- dashboard filter -----------------------------------------------------------------

function filterRows() {
  const table = document.getElementById("items");
  const q = document.getElementById("q");
  if (!table || !q) return;
  const needle = q.value.trim().toLowerCase();
  const state = document.getElementById("state-filter").value;
  const type = document.getElementById("type-filter").value;
  const rows = table.tBodies[0].rows;
  let shown = 0;
  for (const row of rows) {
    const label = row.querySelector("[data-field=label]").textContent;
    const text = `${row.dataset.id} ${row.dataset.name} ${label} ${row.dataset.state}`.toLowerCase();
    const match = (!needle || text.includes(needle)) && (!state || row.dataset.state === state)
      && (!type || row.dataset.group === type);
    row.hidden = !match;
    if (match) shown += 1;
  }
  const count = document.getElementById("count");
  const text = `${shown} of ${rows.length} shown`;
  if (count.textContent !== text) count.textContent = text;
  countStates(rows);
}

// "3 running, 1 backoff, 2 disabled" in the filter's order of states (as the server renders it)
function countStates(rows) {
  const element = document.getElementById("state-counts");
  if (!element) return;
  const counts = new Map();
  for (const row of rows) counts.set(row.dataset.state, (counts.get(row.dataset.state) || 0) + 1);
  const order = [...document.getElementById("state-filter").options].map((o) => o.value).filter(Boolean);
  const known = order.filter((s) => counts.has(s));
  const others = [...counts.keys()].filter((s) => !order.includes(s)).sort();
  const text = [...known, ...others].map((s) => `${counts.get(s)} ${s}`).join(", ");
  if (element.textContent !== text) element.textContent = text;
}

function startFilter() {
  const form = document.getElementById("filters");
  if (!form) return;
  const update = () => {
    filterRows();
    const params = new URLSearchParams(location.search);
    for (const [name, value] of new FormData(form)) {
      if (value) params.set(name, value); else params.delete(name);
    }
    const query = params.toString();
    history.replaceState(null, "", query ? `?${query}` : location.pathname);
    for (const next of document.querySelectorAll("input[name=next]")) {
      next.value = location.pathname + location.search;
    }
  };
  form.addEventListener("input", update);
  form.addEventListener("submit", (event) => { event.preventDefault(); update(); });
}

// -- confirmation of disable and restart ---------------------------------------------

function startConfirm() {
  const dialog = document.getElementById("confirm");
  document.addEventListener("submit", (event) => {
    const form = event.target;
    const button = event.submitter;
    if (!form.classList.contains("actions") || !button || !button.dataset.confirm) return;
    if (form.dataset.confirmed === button.value) return;
    event.preventDefault();
    const proceed = () => {
      let field = form.querySelector("input[name=confirmed]");
      if (!field) {
        field = document.createElement("input");
        field.type = "hidden";
        field.name = "confirmed";
        form.append(field);
      }
      field.value = "1";
      form.dataset.confirmed = button.value;
      form.requestSubmit(button);
    };
    if (!dialog || typeof dialog.showModal !== "function") {
      if (window.confirm(button.dataset.confirm)) proceed();
      return;
    }
    document.getElementById("confirm-text").textContent = button.dataset.confirm;
    const ok = document.getElementById("confirm-ok");
    ok.textContent = button.value === "disable" ? "Disable" : "Restart";
    dialog.returnValue = "";
    dialog.addEventListener("close", () => { if (dialog.returnValue === "ok") proceed(); }, { once: true });
    dialog.showModal();
  });
}

// -- log follow -----------------------------------------------------------------------

function startFollow() {
  const log = document.getElementById("log");
  const button = document.getElementById("follow");
  if (!log || !button || !log.dataset.follow) return;
  const status = document.getElementById("follow-status");
  let following = false;
  let timer = null;
  let offset = Number(log.dataset.offset);
  let inode = log.dataset.inode || ""; // the file the offset is in: a rotation renames it away
  let file = log.dataset.file;
  const stream = log.dataset.stream || "";

  function append(text, marker) {
    if (!text) return;
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    const node = marker ? document.createElement("span") : document.createTextNode(text);
    if (marker) { node.className = "marker"; node.textContent = text; }
    log.append(node);
    while (log.textContent.length > MAX_LOG_CHARS && log.firstChild) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
  }

  function say(text) {
    if (status.textContent !== text) status.textContent = text;
  }

  function url() {
    const params = new URLSearchParams({ file, offset: String(offset) });
    if (inode) params.set("inode", inode);
    if (stream) params.set("stream", stream);
    return `${log.dataset.follow.split("?")[0]}?${params}`;
  }

  async function step() {
    timer = null;
    if (!following) return;
    let more = false;
    try {
      const chunk = await getJSON(url());
      if (chunk.reset) append("\n── the file was truncated; reading it from the start ──\n", true);
      if (chunk.lost) append("\n── the file was rotated and removed before all of it was shown ──\n", true);
      append(chunk.text, false);
      offset = chunk.offset;
      inode = chunk.inode || "";
      more = chunk.more || chunk.rotated;
      if (!more && stream && chunk.current && chunk.current !== file) {
        file = chunk.current;
        offset = 0;
        inode = "";
        more = true;
        append(`\n── a new instance started: ${file} ──\n`, true);
      }
      say("Following");
      setConnection(true, "Live");
    } catch (error) {
      say("Disconnected from Patrol · retrying");
      setConnection(false, "Disconnected from Patrol · retrying");
    }
    if (following) timer = setTimeout(step, more ? 0 : FOLLOW_MS);
  }

  function setFollowing(on) {
    following = on;
    button.setAttribute("aria-pressed", String(on));
    button.textContent = on ? "Stop following" : "Follow";
    if (on) {
      log.scrollTop = log.scrollHeight;
      if (!timer) step();
    } else {
      say("");
      if (timer) clearTimeout(timer);
      timer = null;
    }
  }

  button.hidden = false;
  button.addEventListener("click", () => setFollowing(!following));
  log.scrollTop = log.scrollHeight;
  if (new URLSearchParams(location.search).get("follow") === "1") setFollowing(true);
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.body.dataset.live) startLive(document.body.dataset.live, document.body.dataset.stream);
  startFilter();
  startConfirm();
  startFollow();
});
