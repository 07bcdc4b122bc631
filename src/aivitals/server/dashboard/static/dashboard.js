// The aivitals dashboard: reads the HTTP query API (docs/server.md) and draws it with Plotly.
// State lives in the address's hash (#since=24h&model=gpt-4o), so a view can be bookmarked.

import { loadQualityRates } from "./quality.js";

const FILTERS = ["model", "provider", "feature", "team", "user", "environment"];
const PAGE = 25;
// Error share at or above which a provider is shown degraded, and down; the first is the
// default "error rate" alert threshold.
const DEGRADED = 0.05;
const DOWN = 0.5;
const COLORS = ["#3553d5", "#12805c", "#b54708", "#c01048", "#6941c6", "#0e7090", "#667085"];

const STEP_MS = { minute: 60_000, hour: 3_600_000, day: 86_400_000 };
const AUTO_REFRESH_MS = 30_000;

const state = { since: "24h", where: {}, offset: 0 };
// The time axis of the current refresh: the whole window, so one bucket does not fill a chart.
let time = { axis: {}, stepMs: STEP_MS.hour };
let loads = 0;

const $ = (id) => document.getElementById(id);

function readHash() {
  const params = new URLSearchParams(location.hash.slice(1));
  state.since = params.get("since") || "24h";
  state.where = {};
  for (const name of FILTERS) if (params.get(name)) state.where[name] = params.get(name);
}

function writeHash() {
  const params = new URLSearchParams({ since: state.since, ...state.where });
  history.replaceState(null, "", `#${params}`);
}

// Bucket size for time series: about 15 to 360 points whatever the range.
function stepFor(since) {
  const match = /^(\d+)([mhdw])$/.exec(since);
  const hours = match ? Number(match[1]) * { m: 1 / 60, h: 1, d: 24, w: 168 }[match[2]]
    : (Date.now() - Date.parse(`${since}Z`)) / 3.6e6;
  return hours <= 6 ? "minute" : hours <= 24 * 8 ? "hour" : "day";
}

async function api(path, extra = {}, { filtered = true } = {}) {
  const params = new URLSearchParams({ since: state.since, ...extra });
  if (filtered) for (const [name, value] of Object.entries(state.where)) params.append("where", `${name}=${value}`);
  const reply = await fetch(`api/v1/${path}?${params}`, { credentials: "same-origin" });
  if (!reply.ok) {
    const body = await reply.json().catch(() => ({}));
    throw new Error(body.error || `${path}: HTTP ${reply.status}`);
  }
  return reply.json();
}

// Formatting: money keeps small amounts readable ($0.00042), counts get thousands separators.
const count = (n) => (n == null ? "–" : Number(n).toLocaleString("en-US"));
const ms = (n) => (n == null ? "–" : `${Math.round(n).toLocaleString("en-US")} ms`);
const pct = (n) => (n == null ? "–" : `${(n * 100).toFixed(n < 0.1 ? 2 : 1)}%`);
function usd(n) {
  if (n == null) return "–";
  const digits = n === 0 || Math.abs(n) >= 1 ? 2 : Math.min(6, 2 - Math.floor(Math.log10(Math.abs(n))) + 1);
  return `$${Number(n).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: digits })}`;
}
// A figure of the call detail: money as money, others rounded to what a person reads (323 ms,
// 45.7 ms, 0.833); the API and its JSON keep the stored values.
function figure(name, n) {
  if (name.endsWith("_usd")) return usd(n);
  const size = Math.abs(n);
  const digits = Number.isInteger(n) || size >= 100 ? 0 : size >= 1 ? 1 : 3;
  return n.toLocaleString("en-US", { maximumFractionDigits: digits });
}
// The API writes UTC times with a Z; Plotly reads offset-free strings, so show them as UTC.
const utc = (iso) => iso.replace("Z", "").replace("T", " ");
const label = (group, name) => group[name] ?? "(none)";

function setText(id, text) { $(id).textContent = text; }

function draw(id, traces, layout = {}) {
  const empty = traces.every((t) => !(t.x?.length || t.y?.length || t.values?.length));
  Plotly.react($(id), traces, {
    margin: { l: 50, r: 10, t: 8, b: 40 },
    font: { family: "system-ui, sans-serif", size: 11, color: "#1f2430" },
    colorway: COLORS,
    showlegend: traces.length > 1,
    legend: { orientation: "h", y: -0.25 },
    xaxis: { automargin: true },
    yaxis: { automargin: true, rangemode: "tozero" },
    annotations: empty ? [{ text: "no data", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] : [],
    ...layout,
  }, { displayModeBar: false, responsive: true });
}

// One colour per value of a field, the same in every chart (gpt-4o is one blue throughout).
const colours = new Map();
function colourOf(field, value) {
  if (!colours.has(field)) colours.set(field, new Map());
  const known = colours.get(field);
  if (!known.has(value)) known.set(value, COLORS[known.size % COLORS.length]);
  return known.get(value);
}

// A bar per group; ``extra`` with a ``name`` makes it one series of several (one colour).
function bars(rows, name, value, extra = {}) {
  const x = rows.map((r) => label(r.group, name));
  const marker = extra.name ? {} : { marker: { color: x.map((value) => colourOf(name, value)) } };
  return { type: "bar", x, y: rows.map(value), ...marker, ...extra };
}

// Bars that span their bucket, drawn from its start.
function timeBars(starts, y, name) {
  return { type: "bar", name, x: starts.map(utc), y, width: time.stepMs * 0.9, offset: 0 };
}

function sumByStart(points, value) {
  const sums = new Map();
  for (const p of points) sums.set(p.start, (sums.get(p.start) || 0) + value(p));
  return sums;
}

function renderCost(summary, byModel, byFeature, series) {
  setText("kpi-spend", usd(summary.total_cost_usd));
  setText("kpi-cost-per-request", usd(summary.avg_cost_usd));
  setText("kpi-unpriced", count(summary.unpriced_calls));
  draw("chart-spend", [timeBars(series.map((p) => p.start), series.map((p) => p.cost_usd), "spend")], { xaxis: time.axis });
  draw("chart-spend-model", [bars(byModel, "model", (r) => r.total_cost_usd)]);
  draw("chart-spend-feature", [bars(byFeature, "feature", (r) => r.total_cost_usd)]);
}

function renderLatency(summary, series, histogram) {
  setText("kpi-p50", ms(summary.latency_p50_ms));
  setText("kpi-p95", ms(summary.latency_p95_ms));
  setText("kpi-p99", ms(summary.latency_p99_ms));
  setText("kpi-max", ms(summary.latency_max_ms));
  const x = series.map((p) => utc(p.start));
  draw("chart-latency", ["p50", "p95", "p99"].map((q) => ({
    type: "scatter", mode: "lines+markers", name: q, x, y: series.map((p) => p[`latency_${q}_ms`]),
  })), { xaxis: time.axis });
  const edges = histogram.edges_ms;
  const names = [...edges.map((e) => `<${e >= 1000 ? `${e / 1000}s` : `${e}ms`}`), `≥${edges.at(-1) / 1000}s`];
  const counts = histogram.series[0]?.counts ?? [];
  // Only the bins from the first to the last that hold calls: the rest is empty axis.
  const first = counts.findIndex((c) => c > 0);
  const last = counts.length - 1 - [...counts].reverse().findIndex((c) => c > 0);
  const keep = first < 0 ? [] : names.map((_, i) => i).filter((i) => i >= first && i <= last);
  draw("chart-latency-histogram", [{ type: "bar", x: keep.map((i) => names[i]), y: keep.map((i) => counts[i]), name: "calls" }],
    { xaxis: { type: "category", automargin: true } });
}

function renderTokens(summary, byModel) {
  const tokens = summary.input_tokens + summary.output_tokens;
  setText("kpi-tokens", `${count(summary.input_tokens)} / ${count(summary.output_tokens)}`);
  setText("kpi-tokens-per-request", summary.calls ? count(Math.round(tokens / summary.calls)) : "–");
  setText("kpi-io-ratio", summary.output_tokens ? `${(summary.input_tokens / summary.output_tokens).toFixed(1)} : 1` : "–");
  draw("chart-tokens-model", [
    bars(byModel, "model", (r) => r.input_tokens, { name: "input" }),
    bars(byModel, "model", (r) => r.output_tokens, { name: "output" }),
  ], { barmode: "stack" });
  draw("chart-tokens-per-request", [bars(byModel, "model", (r) => (r.input_tokens + r.output_tokens) / r.calls)]);
  const ratios = byModel.filter((r) => r.output_tokens > 0);
  draw("chart-io-ratio", [bars(ratios, "model", (r) => r.input_tokens / r.output_tokens)]);
}

// The built-in evaluators' 0/1 scores are rates of a fault, drawn by quality.js as rates; the
// means here are the other scores (the judge's, the application's).
const EVALUATORS = new Set(["empty", "truncated", "refusal", "json_valid", "pii_leak"]);

function renderQuality(summary, quality, byFeature) {
  const box = $("kpi-quality");
  box.replaceChildren();
  const names = Object.keys(summary.quality).filter((name) => !EVALUATORS.has(name)).sort();
  for (const name of names) {
    const kpi = document.createElement("div");
    kpi.className = "kpi";
    kpi.innerHTML = `<span></span><b></b>`;
    kpi.querySelector("span").textContent = `mean ${name}`;
    kpi.querySelector("b").textContent = summary.quality[name].toFixed(3);
    box.append(kpi);
  }
  if (!names.length) box.innerHTML = `<p class="empty">no scores in this range</p>`;
  const byName = Map.groupBy(quality.points.filter((p) => !EVALUATORS.has(p.name)), (p) => p.name);
  draw("chart-quality", [...byName].map(([name, points]) => ({
    type: "scatter", mode: "lines+markers", name, x: points.map((p) => utc(p.start)), y: points.map((p) => p.mean),
  })), { xaxis: time.axis });
  const scored = byFeature.filter((r) => Object.keys(r.quality).length);
  draw("chart-quality-feature", names.map((name) => bars(scored, "feature", (r) => r.quality[name] ?? null, { name })),
    { barmode: "group" });
}

function renderHealth(summary, series, byProvider, errorTypes) {
  setText("kpi-calls", count(summary.calls));
  setText("kpi-error-rate", summary.calls ? pct(summary.errors / summary.calls) : "–");
  setText("kpi-speed", summary.tokens_per_second == null ? "–" : summary.tokens_per_second.toFixed(1));
  const calls = sumByStart(series, (p) => p.calls);
  const errors = sumByStart(series, (p) => p.errors);
  const starts = [...calls.keys()];
  draw("chart-volume", [timeBars(starts, starts.map((s) => calls.get(s)), "requests")], { xaxis: time.axis });
  draw("chart-error-rate", [{
    type: "scatter", mode: "lines+markers", name: "errors", x: starts.map(utc),
    y: starts.map((s) => (100 * errors.get(s)) / calls.get(s)),
  }], { xaxis: time.axis });
  draw("chart-error-types", [bars(errorTypes, "error_type", (r) => (100 * r.calls) / summary.calls)]);
  renderProviders(byProvider);
}

function renderProviders(rows) {
  const table = $("providers");
  table.innerHTML = `<thead><tr><th>provider</th><th>status</th><th class="num">requests</th>
    <th class="num">error rate</th><th class="num">p95</th></tr></thead>`;
  const body = table.createTBody();
  for (const row of rows) {
    const share = row.errors / row.calls;
    const status = share >= DOWN ? "down" : share >= DEGRADED ? "degraded" : "ok";
    const tr = body.insertRow();
    tr.dataset.provider = row.group.provider ?? "";
    cells(tr, [label(row.group, "provider"), pill(status), count(row.calls), pct(share), ms(row.latency_p95_ms)], [2, 3, 4]);
  }
  if (!rows.length) body.innerHTML = `<tr><td class="empty" colspan="5">no calls in this range</td></tr>`;
}

// The alert engine is optional: without its endpoint (404), say so rather than show an error.
async function renderAlerts() {
  const box = $("alerts");
  const reply = await fetch("api/v1/alerts", { credentials: "same-origin" });
  if (reply.status === 404) {
    box.innerHTML = `<p class="empty">no alert engine configured</p>`;
    return;
  }
  const body = await reply.json().catch(() => null);
  const alerts = Array.isArray(body) ? body : body?.alerts ?? [];
  if (!reply.ok) {
    box.innerHTML = `<p class="empty"></p>`;
    box.firstChild.textContent = body?.error ?? `alerts: HTTP ${reply.status}`;
    return;
  }
  box.replaceChildren();
  if (!alerts.length) box.innerHTML = `<p class="empty">no active alerts</p>`;
  for (const alert of alerts) {
    const line = document.createElement("p");
    const severity = alert.severity ?? alert.labels?.severity ?? "";
    line.append(pill(severity === "critical" ? "down" : "degraded", severity || "alert"), " ");
    const name = alert.name ?? alert.rule ?? alert.labels?.alertname ?? JSON.stringify(alert);
    const detail = alert.summary ?? alert.message ?? alert.annotations?.summary ?? "";
    line.append(`${name}${detail ? `: ${detail}` : ""}`);
    box.append(line);
  }
}

function pill(kind, text = kind) {
  const span = document.createElement("span");
  span.className = `pill ${kind}`;
  span.textContent = text;
  return span;
}

function cells(tr, values, numeric = []) {
  values.forEach((value, i) => {
    const td = tr.insertCell();
    if (numeric.includes(i)) td.className = "num";
    td.append(value ?? "–");
  });
}

function renderCalls(page) {
  const body = $("calls-body");
  body.replaceChildren();
  for (const { call, scores } of page.calls) {
    const tr = body.insertRow();
    tr.tabIndex = 0;
    tr.dataset.callId = call.id;
    tr.dataset.scores = String(scores.length);
    cells(tr, [
      utc(call.started_at).slice(0, 19), call.model, call.provider, call.feature, call.user,
      pill(call.status, call.status === "error" ? call.error_type : call.status),
      count(Math.round(call.latency_ms)), `${count(call.input_tokens)} / ${count(call.output_tokens)}`,
      call.cost_usd == null ? "unpriced" : usd(call.cost_usd), String(scores.length || ""),
    ], [6, 7, 8, 9]);
    tr.addEventListener("click", () => openCall(call.id));
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") openCall(call.id); });
  }
  if (!page.calls.length) body.innerHTML = `<tr><td class="empty" colspan="10">no calls in this range</td></tr>`;
  setText("page", page.calls.length ? `${state.offset + 1}–${state.offset + page.calls.length}` : "");
  $("newer").disabled = state.offset === 0;
  $("older").disabled = page.calls.length < PAGE;
}

async function openCall(id) {
  const reply = await fetch(`api/v1/calls/${encodeURIComponent(id)}`, { credentials: "same-origin" });
  const detail = await reply.json();
  if (!reply.ok) return showStatus(detail.error, true);
  const { call, scores, trace } = detail;
  // Open first: Plotly sizes a chart from its box, which a closed dialog does not have.
  if (!$("call").open) $("call").showModal();
  setText("call-id", call.id);
  const fields = $("call-fields");
  fields.replaceChildren();
  for (const [name, value] of Object.entries(call)) {
    if (value == null || (typeof value === "object" && !Object.keys(value).length)) continue;
    const shown = typeof value === "number" ? figure(name, value) : typeof value === "object" ? JSON.stringify(value) : String(value);
    cells(fields.insertRow(), [name, shown]);
  }
  const queue = call.queue_ms ?? 0;
  const ttft = call.ttft_ms ?? 0;
  const stages = [["queue", queue], ["first token", ttft], ["generation", Math.max(call.latency_ms - ttft, 0)]];
  draw("chart-stages", stages.filter(([, v]) => v > 0).map(([name, v]) => ({
    type: "bar", orientation: "h", name, x: [v], y: ["ms"], hovertemplate: `${name}: %{x:.0f} ms<extra></extra>`,
  })), { barmode: "stack", margin: { l: 30, r: 10, t: 4, b: 20 }, showlegend: true, legend: { orientation: "h", y: -0.5, traceorder: "normal" } });
  const traceTable = $("call-trace");
  setText("call-trace-id", call.trace_id ?? "(none: no trace context)");
  traceTable.innerHTML = `<thead><tr><th>span</th><th>model</th><th>status</th><th class="num">latency</th></tr></thead>`;
  const traceBody = traceTable.createTBody();
  for (const other of trace) {
    const tr = traceBody.insertRow();
    cells(tr, [other.id === call.id ? `${other.span_id ?? other.id} (this call)` : other.span_id ?? other.id,
      other.model, pill(other.status), ms(other.latency_ms)], [3]);
  }
  const scoreTable = $("call-scores");
  scoreTable.innerHTML = `<thead><tr><th>name</th><th class="num">value</th><th>range</th><th>source</th><th>comment</th></tr></thead>`;
  const scoreBody = scoreTable.createTBody();
  for (const score of scores) {
    cells(scoreBody.insertRow(), [score.name, figure("value", score.value), `${score.min_value}–${score.max_value}`, score.source, score.comment], [1]);
  }
  if (!scores.length) scoreBody.innerHTML = `<tr><td class="empty" colspan="5">no scores</td></tr>`;
  showContent(detail.content);
  document.body.dataset.call = call.id;
}

// The captured prompt and answer (already redacted by the server), as text: never as HTML.
function showContent(content) {
  const box = $("call-content");
  box.replaceChildren();
  if (!content) {
    box.innerHTML = `<p class="empty">not captured (content capture is off, or past its retention)</p>`;
    return;
  }
  const turn = (role, text) => {
    const part = document.createElement("div");
    part.className = `turn ${role}`;
    const who = document.createElement("strong");
    who.textContent = role;
    const said = document.createElement("pre");
    said.textContent = text;
    part.append(who, said);
    box.append(part);
  };
  for (const message of content.messages) turn(message.role, message.text);
  if (content.output_text != null) turn("answer", content.output_text);
  for (const tool of content.tool_calls) turn(`tool call: ${tool.name}`, tool.arguments);
  if (content.redactions) {
    const note = document.createElement("p");
    note.className = "empty";
    note.textContent = `${content.redactions} redacted`;
    box.append(note);
  }
}

async function loadFilters() {
  const { values } = await api("values", { limit: "200" }, { filtered: false });
  const box = $("filters");
  box.replaceChildren();
  for (const name of FILTERS) {
    const select = document.createElement("select");
    select.id = `filter-${name}`;
    select.dataset.testid = `filter-${name}`;
    select.append(new Option("all", ""));
    const known = values[name].map((v) => v.value);
    // A filter from the address may name a value absent from this range: keep it selectable.
    if (state.where[name] && !known.includes(state.where[name])) known.unshift(state.where[name]);
    for (const value of known) select.append(new Option(value, value));
    select.value = state.where[name] ?? "";
    select.addEventListener("change", () => {
      if (select.value) state.where[name] = select.value; else delete state.where[name];
      state.offset = 0;
      refresh();
    });
    const wrap = document.createElement("label");
    wrap.append(name, select);
    box.append(wrap);
  }
}

function showStatus(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

async function refreshCalls() {
  renderCalls(await api("calls", { limit: String(PAGE), offset: String(state.offset) }));
}

// Every panel reads on its own request; the page counts whole refreshes in data-loads so that
// tests (and people) can tell when the figures on screen belong to the current controls.
async function refresh() {
  writeHash();
  document.body.dataset.state = "loading";
  showStatus("loading…");
  const step = stepFor(state.since);
  try {
    const [{ summary, window }, byModel, byFeature, byProvider, errorTypes, timeseries, histogram, quality] = await Promise.all([
      api("summary"),
      api("breakdown", { by: "model" }).then((b) => b.rows),
      api("breakdown", { by: "feature" }).then((b) => b.rows),
      api("breakdown", { by: "provider" }).then((b) => b.rows),
      api("breakdown", { by: "error_type" }).then((b) => b.rows.filter((r) => r.group.error_type)),
      api("timeseries", { step }).then((b) => b.points),
      api("histogram"),
      api("quality", { step }),
    ]);
    time = { axis: { type: "date", range: [utc(window.start), utc(window.end)], automargin: true }, stepMs: STEP_MS[step] };
    renderCost(summary, byModel, byFeature, timeseries);
    renderLatency(summary, timeseries, histogram);
    renderTokens(summary, byModel);
    renderQuality(summary, quality, byFeature);
    renderHealth(summary, timeseries, byProvider, errorTypes);
    await Promise.all([refreshCalls(), renderAlerts(), loadQualityRates()]);
    const minute = (iso) => utc(iso).slice(0, 16);
    showStatus(`${count(summary.calls)} calls · ${minute(window.start)} to ${minute(window.end)} UTC`);
  } catch (error) {
    showStatus(error.message, true);
  }
  document.body.dataset.loads = String(++loads);
  document.body.dataset.state = "ready";
}

function start() {
  readHash();
  const range = $("range");
  const since = $("since");
  const preset = [...range.options].some((o) => o.value === state.since);
  range.value = preset ? state.since : "custom";
  since.hidden = preset;
  if (!preset) since.value = state.since.slice(0, 16);
  range.addEventListener("change", () => {
    since.hidden = range.value !== "custom";
    if (range.value === "custom") return since.focus();
    state.since = range.value;
    state.offset = 0;
    loadFilters().then(refresh);
  });
  since.addEventListener("change", () => {
    if (!since.value) return;
    state.since = since.value;
    state.offset = 0;
    loadFilters().then(refresh);
  });
  // Auto-refresh re-reads everything on a timer; a refresh still running is never doubled.
  let timer = null;
  $("auto").addEventListener("change", (event) => {
    clearInterval(timer);
    if (event.target.checked) {
      timer = setInterval(() => { if (document.body.dataset.state === "ready") refresh(); }, AUTO_REFRESH_MS);
    }
  });
  $("newer").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); refreshCalls(); });
  $("older").addEventListener("click", () => { state.offset += PAGE; refreshCalls(); });
  loadFilters().catch((error) => showStatus(error.message, true)).then(refresh);
}

start();
