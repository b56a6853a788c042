// perdure serve: the web UI. Plain JavaScript, no build step.
// Every value that comes from a run is put in the page as text (textContent,
// text nodes, SVG <title> text): nothing from the API is ever parsed as HTML.
"use strict";

const WRITE_HEADER = "X-Perdure-Request";
const STATUSES = ["running", "waiting", "completed", "failed", "cancelled", "parked"];
const NS = "http://www.w3.org/2000/svg";

// -- helpers ---------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = String(value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, title) {
  const node = document.createElementNS(NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (title !== undefined) {
    const t = document.createElementNS(NS, "title");
    t.textContent = String(title);
    node.append(t);
  }
  return node;
}

function pretty(value) {
  if (value === undefined) return "";
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

function when(ts) {
  if (!ts) return "";
  return new Date(ts * 1000).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function clock(ts) {
  return new Date(ts * 1000).toISOString().slice(11, 23);
}

function ago(ts) {
  if (!ts) return "";
  const s = Math.max(0, Date.now() / 1000 - ts);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function badge(status) {
  return el("span", { class: `badge ${STATUSES.includes(status) ? status : ""}`, "data-status": status }, status);
}

function toast(text) {
  const box = document.getElementById("toast");
  box.textContent = text;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 4000);
}

async function api(path, options = {}) {
  const init = { method: options.method || "GET", headers: { Accept: "application/json" }, credentials: "same-origin" };
  if (init.method !== "GET") {
    init.headers[WRITE_HEADER] = "1";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.body || {});
  }
  const response = await fetch(path, init);
  if (response.status === 401 && !path.startsWith("/api/login")) {
    location.href = "/login";
    throw new Error("sign in first");
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new Error(`${error.type || response.status}: ${error.message || response.statusText}`);
  }
  return data;
}

function runPath(runId) {
  return `/runs/${encodeURIComponent(runId)}`;
}

function apiRun(runId, rest = "") {
  return `/api/runs/${encodeURIComponent(runId)}${rest}`;
}

let cleanup = [];
function onLeave(fn) { cleanup.push(fn); }
function leave() { for (const fn of cleanup) fn(); cleanup = []; }

function navigate(path) {
  history.pushState(null, "", path);
  route();
}

function link(path, ...children) {
  return el("a", { href: path, onclick: (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    navigate(path);
  } }, ...children);
}

// -- the run list ----------------------------------------------------------------------------

async function runList(main) {
  const params = new URLSearchParams(location.search);
  const status = el("select", { id: "f-status", name: "status" }, el("option", { value: "" }, "any status"),
    ...STATUSES.map((s) => el("option", { value: s }, s)));
  const target = el("select", { id: "f-target", name: "target" }, el("option", { value: "" }, "any target"));
  const text = el("input", { id: "f-text", name: "q", type: "search", placeholder: "run id, target, key or error", title: "finds runs whose run id, target, idempotency key or error (or a word in them) starts with this text" });
  const since = el("select", { id: "f-since", name: "since" }, ...[["", "any time"], ["3600", "last hour"], ["86400", "last day"], ["604800", "last 7 days"]]
    .map(([value, label]) => el("option", { value }, label)));
  since.value = params.get("since") || "";
  status.value = params.get("status") || "";
  text.value = params.get("q") || "";
  const body = el("tbody", { id: "runs" });
  const more = el("button", { class: "secondary more", id: "more", type: "button" }, "Load more");
  const count = el("span", { class: "muted", id: "count" });
  main.replaceChildren(
    el("h1", {}, "Runs"),
    el("form", { class: "filters", id: "filters", onsubmit: (e) => e.preventDefault() },
      el("label", {}, "Status", status), el("label", {}, "Target", target), el("label", {}, "Created", since), el("label", {}, "Search", text), count),
    el("table", {}, el("thead", {}, el("tr", {}, ...["Run", "Target", "Status", "Created", "Updated", "Events"].map((h) => el("th", {}, h)))), body),
    more,
  );
  try {
    const found = await api("/api/targets");
    for (const t of found.targets) target.append(el("option", { value: t.name }, `${t.name} (${t.kind})`));
    target.value = params.get("target") || "";
  } catch (error) { toast(String(error.message)); }

  let cursor = null;
  let shown = 0;
  function query(extra) {
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (target.value) q.set("target", target.value);
    if (text.value.trim()) q.set("q", text.value.trim());
    if (since.value) q.set("since", since.value);
    for (const [k, v] of Object.entries(extra || {})) q.set(k, v);
    return q;
  }
  function row(run) {
    return el("tr", { class: "run-row", "data-run-id": run.run_id },
      el("td", { class: "mono" }, link(runPath(run.run_id), run.run_id)),
      el("td", {}, run.target), el("td", {}, badge(run.status)),
      el("td", { title: when(run.created_ts) }, ago(run.created_ts)),
      el("td", { title: when(run.updated_ts) }, ago(run.updated_ts)),
      el("td", {}, run.events));
  }
  async function load(reset) {
    const pageSize = reset ? Math.max(50, shown) : 50;
    const q = query({ limit: String(Math.min(pageSize, 500)) });
    if (!reset && cursor) q.set("cursor", cursor);
    if (q.has("since")) q.set("since", String(Date.now() / 1000 - Number(q.get("since"))));
    const data = await api(`/api/runs?${q}`);
    const rows = data.runs.map(row);
    if (reset) body.replaceChildren(...rows); else body.append(...rows);
    if (reset && rows.length === 0) body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "empty" }, "No runs match.")));
    shown = reset ? data.runs.length : shown + data.runs.length;
    cursor = data.next_cursor;
    more.hidden = !cursor;
    count.textContent = `${shown}${cursor ? "+" : ""} run(s)`;
  }
  function refilter() {
    const q = query();
    history.replaceState(null, "", q.toString() ? `/?${q}` : "/");
    shown = 0;
    load(true).catch((e) => toast(e.message));
  }
  status.addEventListener("change", refilter);
  target.addEventListener("change", refilter);
  since.addEventListener("change", refilter);
  let typing = null;
  text.addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 250); });
  more.addEventListener("click", () => load(false).catch((e) => toast(e.message)));
  await load(true);
  const timer = setInterval(() => { if (!document.hidden) load(true).catch(() => {}); }, 2000);
  document.getElementById("live").textContent = "● live";
  onLeave(() => { clearInterval(timer); document.getElementById("live").textContent = ""; });
}

// -- the run page ----------------------------------------------------------------------------

const COLORS = {
  attempt: "#1971c2", done: "#2b8a3e", failed: "#c92a2a", retry: "#e67700",
  sleep: "#0c8599", interrupt: "#7048e8", run: "#495057", message: "#d6336c", other: "#868e96",
};
const BASE_FIELDS = new Set(["t", "v", "run_id", "seq", "ts"]);

function short(value, max = 160) {
  const text = pretty(value).replace(/\s+/g, " ");
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

function extraFields(e) {
  return Object.fromEntries(Object.entries(e).filter(([k]) => !BASE_FIELDS.has(k)));
}

function timeline(events, details) {
  // Lanes: the run, then one per task position, then timers and interrupts.
  if (!events.length) return el("p", { class: "muted" }, "No events.");
  const t0 = events[0].ts;
  const settled = ["completed", "failed", "cancelled", "parked"].includes(details.status);
  let t1 = Math.max(...events.map((e) => Math.max(e.ts, e.due_at || 0)));
  if (!settled) t1 = Math.max(t1, Date.now() / 1000);
  const span = Math.max(t1 - t0, 0.001);
  const lanes = ["run"];
  const laneOf = (name) => { if (!lanes.includes(name)) lanes.push(name); return lanes.indexOf(name); };
  const shapes = [];
  const open = new Map();
  for (const e of events) {
    const key = e.position !== undefined ? `${e.name || "task"} @${e.position}` : null;
    switch (e.t) {
      case "run_started": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.run, title: `run started (invocation ${e.invocation})` }); break;
      case "run_completed": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.done, title: "run completed" }); break;
      case "run_failed": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.failed, title: `run failed: ${e.error_type}: ${e.message}` }); break;
      case "run_cancelled": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.run, title: `run cancelled: ${e.reason || ""}` }); break;
      case "run_parked": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.retry, title: `run parked: ${e.reason}` }); break;
      case "run_continued": shapes.push({ lane: laneOf("run"), kind: "mark", at: e.ts, color: COLORS.attempt, title: "run continued" }); break;
      case "task_attempt_started": open.set(`${key}#${e.attempt}`, e); laneOf(key); break;
      case "task_attempt_failed":
      case "task_completed":
      case "task_failed":
      case "task_suspended": {
        const startKey = [...open.keys()].reverse().find((k) => k.startsWith(`${key}#`));
        const start = startKey ? open.get(startKey) : null;
        if (startKey) open.delete(startKey);
        const color = e.t === "task_completed" ? COLORS.done : e.t === "task_suspended" ? COLORS.interrupt : COLORS.failed;
        const what = e.t === "task_completed" ? "completed" : e.t === "task_suspended" ? "suspended" : `failed: ${e.error_type}: ${e.message}`;
        shapes.push({ lane: laneOf(key), kind: "bar", from: start ? start.ts : e.ts, to: e.ts, color, title: `${key} attempt ${start ? start.attempt : e.attempt || ""} ${what}` });
        break;
      }
      case "timer_set": shapes.push({ lane: laneOf(e.purpose === "retry" ? "retry backoff" : "timers"), kind: "bar", from: e.ts, to: e.due_at, color: e.purpose === "retry" ? COLORS.retry : COLORS.sleep, dashed: true, title: `${e.purpose} timer ${e.timer_id} until ${when(e.due_at)}` }); break;
      case "timer_fired": shapes.push({ lane: laneOf("timers"), kind: "mark", at: e.ts, color: COLORS.sleep, title: `timer ${e.timer_id} fired` }); break;
      case "interrupted": open.set(`interrupt:${e.interrupt_id}`, e); shapes.push({ lane: laneOf("interrupts"), kind: "mark", at: e.ts, color: COLORS.interrupt, title: `interrupt ${e.interrupt_id}: ${pretty(e.value)}` }); break;
      case "resumed": {
        const asked = open.get(`interrupt:${e.interrupt_id}`);
        shapes.push({ lane: laneOf("interrupts"), kind: "bar", from: asked ? asked.ts : e.ts, to: e.ts, color: COLORS.interrupt, title: `interrupt ${e.interrupt_id} answered: ${pretty(e.value)}` });
        open.delete(`interrupt:${e.interrupt_id}`);
        break;
      }
      case "message_received": shapes.push({ lane: laneOf("messages"), kind: "mark", at: e.ts, color: COLORS.message, title: `message on ${e.topic}: ${short(e.value)}` }); break;
      case "receive_waiting": open.set(`receive:${e.position}`, e); laneOf("messages"); break;
      case "message_delivered": {
        const waited = open.get(`receive:${e.position}`);
        open.delete(`receive:${e.position}`);
        shapes.push({ lane: laneOf("messages"), kind: "bar", from: waited ? waited.ts : e.ts, to: e.ts, color: COLORS.message, title: `receive(${e.topic}) @${e.position} took message #${e.message_seq}` });
        break;
      }
      case "event_set": shapes.push({ lane: laneOf("published values"), kind: "mark", at: e.ts, color: COLORS.other, title: `set_event ${e.key}: ${short(e.value)}` }); break;
      default: {
        // Any other kind of event (child runs, new kinds): a mark on a lane named after the
        // first word of its type, titled with its fields, so it shows up without a change here.
        const lane = String(e.t || "event").split("_")[0];
        shapes.push({ lane: laneOf(lane), kind: "mark", at: e.ts, color: COLORS.other, title: `${e.t}: ${short(extraFields(e))}` });
        break;
      }
    }
  }
  for (const [k, e] of open) {  // still running attempts, unanswered interrupts, open receives
    if (k.startsWith("receive:")) {
      shapes.push({ lane: laneOf("messages"), kind: "bar", from: e.ts, to: t1, color: COLORS.message, open: true, title: `receive(${e.topic}) @${e.position} waiting for a message` });
      continue;
    }
    const lane = k.startsWith("interrupt:") ? laneOf("interrupts") : laneOf(k.split("#")[0]);
    shapes.push({ lane, kind: "bar", from: e.ts, to: t1, color: k.startsWith("interrupt:") ? COLORS.interrupt : COLORS.attempt, open: true, title: k.startsWith("interrupt:") ? `interrupt ${e.interrupt_id} waiting for an answer` : `${k} running` });
  }
  const labelW = 190, width = 980, laneH = 26, top = 24;
  const plotW = width - labelW - 20;
  const x = (ts) => labelW + ((ts - t0) / span) * plotW;
  const height = top + lanes.length * laneH + 10;
  const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", id: "timeline-svg" });
  root.append(svg("title", {}, "timeline"));
  for (let i = 0; i <= 4; i++) {
    const gx = labelW + (plotW * i) / 4;
    root.append(svg("line", { x1: gx, x2: gx, y1: top - 6, y2: height - 6, stroke: "#eef0f3" }));
    const label = svg("text", { x: gx, y: 14, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle" });
    label.textContent = `+${((span * i) / 4).toFixed(span < 10 ? 2 : 0)}s`;
    root.append(label);
  }
  lanes.forEach((name, i) => {
    const y = top + i * laneH;
    if (i % 2 === 0) root.append(svg("rect", { x: 0, y, width, height: laneH, fill: "#fafbfc" }));
    const label = svg("text", { x: 8, y: y + 17 });
    label.textContent = name.length > 28 ? `${name.slice(0, 27)}…` : name;
    root.append(label);
  });
  for (const s of shapes) {
    const y = top + s.lane * laneH;
    if (s.kind === "bar") {
      const x0 = x(s.from), w = Math.max(x(s.to) - x0, 3);
      root.append(svg("rect", { x: x0, y: y + 6, width: w, height: laneH - 12, rx: 3, fill: s.dashed ? "none" : s.color, stroke: s.color, "stroke-dasharray": s.dashed ? "4 3" : "none", opacity: s.open ? 0.55 : 0.9, class: "tl-bar" }, s.title));
    } else {
      const cx = x(s.at), cy = y + laneH / 2;
      root.append(svg("path", { d: `M ${cx} ${cy - 6} L ${cx + 6} ${cy} L ${cx} ${cy + 6} L ${cx - 6} ${cy} Z`, fill: s.color, class: "tl-mark" }, s.title));
    }
  }
  const legend = el("div", { class: "legend" }, ...[["attempt", "running attempt"], ["done", "completed"], ["failed", "failed attempt"], ["retry", "retry backoff"], ["sleep", "timer"], ["interrupt", "interrupt"], ["message", "message"], ["other", "other event"]]
    .map(([k, label]) => el("span", {}, el("i", { class: `sw-${k}` }), label)));
  return el("div", { class: "timeline card", id: "timeline" }, root, legend);
}

function field(name, value) {
  return el("div", { class: "kv" }, el("dt", {}, name), el("dd", {}, value));
}

function interruptsBox(details, refresh) {
  if (!details.pending_interrupts.length) return null;
  return el("section", { id: "interrupts" }, el("h2", {}, "Waiting for an answer"),
    ...details.pending_interrupts.map((asked) => {
      const answer = el("textarea", { name: "answer", "aria-label": `answer to ${asked.id}`, placeholder: 'JSON, e.g. "approve" or {"ok": true}; plain text is sent as a string' });
      const error = el("p", { class: "error" });
      const form = el("form", { class: "answer-form", onsubmit: async (event) => {
        event.preventDefault();
        const raw = answer.value.trim();
        let value;
        try { value = JSON.parse(raw); } catch { value = raw; }
        const button = form.querySelector("button");
        button.disabled = true;
        try {
          await api(apiRun(details.run_id, "/resume"), { method: "POST", body: { value } });
          toast("answer sent");
          refresh();
        } catch (e) { error.textContent = e.message; button.disabled = false; }
      } }, answer, el("div", {}, el("button", { type: "submit" }, "Send answer")), error);
      return el("div", { class: "card interrupt", "data-interrupt-id": asked.id },
        el("div", { class: "muted" }, `interrupt ${asked.id} at step ${asked.position}`),
        el("pre", { class: "payload question" }, pretty(asked.value)), form);
    }));
}

function replayBox(result) {
  const ok = result.ok;
  const parts = [
    el("div", {}, el("strong", {}, ok ? "The loaded code fits this run's log." : "The loaded code does not fit this run's log."),
      " ", el("span", { class: "muted" }, `matched ${result.matched} step(s); ${result.replayed}; recorded end: ${result.recorded_end}`)),
  ];
  if (result.divergence) {
    const d = result.divergence;
    parts.push(el("p", {}, `Divergence at position ${d.position}${d.location ? ` (${d.location})` : ""}:`),
      el("div", { class: "side" },
        el("div", {}, el("h3", {}, "recorded in the log"), el("pre", { class: "payload" }, pretty(d.recorded))),
        el("div", {}, el("h3", {}, "requested by the code"), el("pre", { class: "payload" }, pretty(d.requested)))));
  }
  for (const note of result.notes || []) parts.push(el("p", { class: "muted" }, note));
  return el("div", { class: `card verdict ${ok ? "ok" : "bad"}`, id: "verdict", "data-ok": ok ? "true" : "false" }, ...parts);
}

async function runPage(main, runId) {
  main.replaceChildren(el("p", { class: "muted" }, "loading…"));
  let busy = false, again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const details = await api(apiRun(runId));
      const events = [];
      let from = 0;
      for (;;) {
        const page = await api(apiRun(runId, `/events?from=${from}&limit=1000`));
        events.push(...page.events);
        if (page.next_from === null || page.next_from === undefined) break;
        from = page.next_from;
      }
      render(details, events);
    } catch (e) {
      main.replaceChildren(el("h1", {}, "Run"), el("p", { class: "error", id: "run-error" }, e.message));
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }
  let verdict = null;
  function render(details, events) {
    const live = details.status === "running" || details.status === "waiting";
    const actions = el("div", { class: "actions" },
      el("button", { class: "secondary", id: "replay", type: "button", onclick: async () => {
        try { verdict = await api(apiRun(runId, "/replay"), { method: "POST" }); refresh(); } catch (e) { toast(e.message); }
      } }, "Replay check"),
      ["failed", "parked"].includes(details.status) ? el("button", { id: "continue", type: "button", onclick: async () => {
        try { await api(apiRun(runId, "/continue"), { method: "POST" }); toast("continued"); refresh(); } catch (e) { toast(e.message); }
      } }, "Continue") : null,
      live ? el("button", { class: "danger", id: "cancel", type: "button", onclick: async () => {
        if (!confirm(`Cancel run ${runId}?`)) return;
        try { await api(apiRun(runId, "/cancel"), { method: "POST", body: { reason: "cancelled from the web UI" } }); toast("cancelled"); refresh(); } catch (e) { toast(e.message); }
      } }, "Cancel") : null);
    const error = details.error;
    // A live update must not wipe an answer being typed: keep each draft by interrupt id.
    const drafts = new Map([...main.querySelectorAll(".interrupt")].map((box) => [box.dataset.interruptId, box.querySelector("textarea").value]));
    main.replaceChildren(...[
      el("p", {}, link("/", "← all runs")),
      el("div", { class: "run-head" }, el("h1", { class: "mono", id: "run-id" }, details.run_id), badge(details.status), actions),
      el("div", { class: "grid" },
        field("target", `${details.target} (${details.kind})`), field("created", when(Date.parse(details.created_at) / 1000) || details.created_at),
        field("duration", details.duration_s === null ? "" : `${details.duration_s} s`), field("events", details.events),
        field("task attempts", details.task_attempts), field("idempotency key", details.idempotency_key || "—")),
      interruptsBox(details, refresh),
      verdict ? el("section", {}, el("h2", {}, "Replay check"), replayBox(verdict)) : null,
      el("h2", {}, "Timeline"), timeline(events, details),
      el("div", { class: "side" },
        el("div", {}, el("h2", {}, "Input"), el("pre", { class: "payload", id: "run-input" }, pretty(details.input))),
        el("div", {}, el("h2", {}, error ? "Error" : "Result"), el("pre", { class: "payload", id: "run-result" },
          error ? `${error.type}: ${error.message}\n\n${error.traceback || ""}` : details.status === "completed" ? pretty(details.result) : details.reason || "—"))),
      el("h2", {}, `Events (${events.length})`),
      el("table", { id: "events" }, el("thead", {}, el("tr", {}, ...["#", "time", "event", "payload"].map((h) => el("th", {}, h)))),
        el("tbody", {}, ...events.map((e) => {
          const payload = Object.fromEntries(Object.entries(e).filter(([k, v]) => !["t", "v", "run_id", "seq", "ts"].includes(k) && v !== null && !(typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0)));
          const trace = payload.traceback;
          delete payload.traceback;
          return el("tr", { "data-event": e.t }, el("td", {}, e.seq), el("td", { class: "mono nowrap", title: when(e.ts) }, clock(e.ts)), el("td", { class: "mono" }, e.t),
            el("td", {}, el("pre", { class: "payload" }, pretty(payload) + (trace ? `\n\ntraceback:\n${trace}` : ""))));
        }))),
    ].filter((node) => node !== null));
    for (const box of main.querySelectorAll(".interrupt")) {
      const draft = drafts.get(box.dataset.interruptId);
      if (draft) box.querySelector("textarea").value = draft;
    }
  }
  await refresh();
  const source = new EventSource(apiRun(runId, "/stream?from=999999999999"));
  let pending = null;
  const soon = () => { clearTimeout(pending); pending = setTimeout(refresh, 150); };
  source.addEventListener("events", (message) => { if (JSON.parse(message.data).length) soon(); });
  source.addEventListener("settled", soon);
  document.getElementById("live").textContent = "● live";
  onLeave(() => { source.close(); clearTimeout(pending); document.getElementById("live").textContent = ""; });
}

// -- statistics ------------------------------------------------------------------------------

const STATUS_COLORS = {
  running: "#1971c2", waiting: "#7048e8", completed: "#2b8a3e", failed: "#c92a2a",
  cancelled: "#868e96", parked: "#e67700",
};

function statusChart(data) {
  const max = Math.max(1, ...STATUSES.map((s) => data.runs_by_status[s] || 0));
  const chart = svg("svg", { width: 560, height: 30 * STATUSES.length + 10, id: "status-chart", role: "img" });
  STATUSES.forEach((s, i) => {
    const n = data.runs_by_status[s] || 0;
    const label = svg("text", { x: 0, y: 30 * i + 20 });
    label.textContent = s;
    chart.append(label, svg("rect", { x: 90, y: 30 * i + 6, width: Math.max(2, (n / max) * 400), height: 18, rx: 3, fill: STATUS_COLORS[s] }, `${s}: ${n}`));
    const count = svg("text", { x: 96 + Math.max(2, (n / max) * 400), y: 30 * i + 20 });
    count.textContent = String(n);
    chart.append(count);
  });
  return chart;
}

function hourlyChart(history) {
  // One stacked bar per hour: the runs created in that hour, by their status now.
  const rows = history.runs_by_hour;
  const totals = rows.map((r) => STATUSES.reduce((sum, s) => sum + (r.counts[s] || 0), 0));
  const max = Math.max(4, Math.ceil(Math.max(...totals) / 4) * 4);  // whole-number grid lines
  const left = 44, width = 960, height = 220, bottom = 24, top = 10;
  const plotH = height - bottom - top;
  const step = (width - left - 10) / Math.max(1, rows.length);
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, id: "hourly-chart", role: "img" });
  chart.append(svg("title", {}, "runs by status per hour"));
  for (let i = 0; i <= 4; i++) {
    const y = top + plotH - (plotH * i) / 4;
    chart.append(svg("line", { x1: left, x2: width - 10, y1: y, y2: y, stroke: "#eef0f3" }));
    const label = svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" });
    label.textContent = String(Math.round((max * i) / 4));
    chart.append(label);
  }
  rows.forEach((row, i) => {
    const x = left + i * step + 2;
    let y = top + plotH;
    for (const s of STATUSES) {
      const n = row.counts[s] || 0;
      if (!n) continue;
      const h = (n / max) * plotH;
      y -= h;
      chart.append(svg("rect", { x, y, width: Math.max(1, step - 4), height: Math.max(h, 1), fill: STATUS_COLORS[s], class: "hour-bar" }, `${when(row.hour)}: ${n} ${s}`));
    }
    if (i % Math.ceil(rows.length / 12) === 0) {
      const label = svg("text", { x: x + step / 2 - 2, y: height - 6, "text-anchor": "middle" });
      label.textContent = `${new Date(row.hour * 1000).toISOString().slice(11, 13)}h`;
      chart.append(label);
    }
  });
  const legend = el("div", { class: "legend" }, ...STATUSES.map((s) => el("span", {}, el("i", { class: `sw-status sw-${s}` }), s)));
  return el("div", {}, chart, legend);
}

function latencyChart(history) {
  const steps = history.steps.slice().sort((a, b) => b.p95_ms - a.p95_ms).slice(0, 15);
  if (!steps.length) return el("p", { class: "muted", id: "latency-empty" }, "No step ran in this window.");
  const labelW = 220, width = 960, rowH = 30;
  const max = Math.max(0.001, ...steps.map((s) => s.max_ms));
  const scale = (ms) => ((width - labelW - 340) * ms) / max;  // room for the figures
  const chart = svg("svg", { width, height: rowH * steps.length + 8, id: "latency-chart", role: "img" });
  chart.append(svg("title", {}, "step latency"));
  steps.forEach((step, i) => {
    const y = i * rowH + 4;
    const name = svg("text", { x: 0, y: y + 17 });
    name.textContent = step.name.length > 30 ? `${step.name.slice(0, 29)}…` : step.name;
    chart.append(name);
    chart.append(svg("rect", { x: labelW, y: y + 4, width: Math.max(2, scale(step.p95_ms)), height: 16, rx: 3, fill: "#a5d8ff", class: "lat-p95" }, `${step.name}: p95 ${step.p95_ms} ms`));
    chart.append(svg("rect", { x: labelW, y: y + 8, width: Math.max(2, scale(step.p50_ms)), height: 8, rx: 2, fill: "#1971c2", class: "lat-p50" }, `${step.name}: p50 ${step.p50_ms} ms`));
    const text = svg("text", { x: labelW + Math.max(2, scale(step.p95_ms)) + 6, y: y + 17 });
    text.textContent = `p50 ${step.p50_ms} · p95 ${step.p95_ms} · max ${step.max_ms} ms · ${step.attempts} attempts${step.failed ? `, ${step.failed} failed` : ""}`;
    chart.append(text);
  });
  return chart;
}

async function statsPage(main, hours) {
  hours = hours || 24;
  const [data, history] = await Promise.all([api("/api/stats"), api(`/api/stats/history?hours=${hours}`)]);
  const stat = (n, l) => el("div", { class: "card stat" }, el("div", { class: "n" }, n), el("div", { class: "l" }, l));
  const picker = el("select", { id: "stats-hours", "aria-label": "window", onchange: () => { leave(); statsPage(main, Number(picker.value)).catch(() => {}); } },
    ...[6, 24, 72, 168].map((h) => el("option", { value: h, selected: h === hours }, h < 48 ? `last ${h} hours` : `last ${h / 24} days`)));
  main.replaceChildren(
    el("h1", {}, "Statistics"),
    el("div", { class: "stats-cards", id: "stats" },
      stat(data.runs, "runs"), stat(data.events, "events"), stat(data.pending_timers, "pending timers"),
      stat(data.idempotency_keys, "idempotency keys"), stat(data.live_actors, "live runs in memory"),
      stat(data.restarts, "actor restarts"), stat(`${(data.size_bytes / 1048576).toFixed(1)} MiB`, "store size")),
    el("h2", {}, "Runs by status"), el("div", { class: "card" }, statusChart(data)),
    el("div", { class: "run-head" }, el("h2", {}, "Runs by status over time"), picker),
    el("div", { class: "card", id: "hourly" }, hourlyChart(history),
      history.counted_from === "sample" ? el("p", { class: "muted" }, history.partial ? "Counted from the newest runs of the window (a sample)." : "Counted from the runs of the window.") : null),
    el("h2", {}, `Step latency (the ${history.latency_runs} newest runs of the window)`),
    el("div", { class: "card", id: "latency" }, latencyChart(history)),
    el("h2", {}, "Targets of the loaded app"), el("div", { class: "card mono" }, data.targets.join(", ") || "none"),
  );
  const timer = setInterval(() => { if (!document.hidden) { leave(); statsPage(main, hours).catch(() => {}); } }, 5000);
  onLeave(() => clearInterval(timer));
}

// -- routing ---------------------------------------------------------------------------------

function route() {
  leave();
  const main = document.getElementById("main");
  const path = location.pathname;
  for (const a of document.querySelectorAll(".top nav a")) a.classList.toggle("active", a.getAttribute("href") === (path.startsWith("/stats") ? "/stats" : "/"));
  let page;
  if (path.startsWith("/runs/")) page = runPage(main, decodeURIComponent(path.slice(6)));
  else if (path === "/stats") page = statsPage(main);
  else page = runList(main);
  page.catch((e) => main.replaceChildren(el("p", { class: "error" }, e.message)));
}

function loginPage() {
  const form = document.getElementById("login");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const error = document.getElementById("login-error");
    try {
      await api("/api/login", { method: "POST", body: { token: document.getElementById("token").value } });
      location.href = "/";
    } catch (e) { error.textContent = "That token is not right."; }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("login")) { loginPage(); return; }
  for (const a of document.querySelectorAll(".top a")) a.addEventListener("click", (event) => { event.preventDefault(); navigate(a.getAttribute("href")); });
  window.addEventListener("popstate", route);
  route();
});
