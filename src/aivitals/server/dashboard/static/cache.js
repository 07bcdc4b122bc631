// The dashboard's cache and guardrails row, from GET api/v1/cache (the same answer as the
// `cache` of `aivitals report --json`): per cache level the share of calls, the spend and the
// upstream time avoided, and the latency of a hit against a miss; and what the guardrails did.
// Its window and filters are the dashboard's, read from the address's hash that dashboard.js
// keeps; it asks again after each of the dashboard's refreshes.

const FILTERS = ["model", "provider", "feature", "team", "user", "environment"];
const HITS = new Set(["exact", "semantic"]);

const $ = (id) => document.getElementById(id);
const row = () => $("cache");

function query() {
  const params = new URLSearchParams(location.hash.slice(1));
  const asked = new URLSearchParams({ since: params.get("since") || "24h" });
  for (const name of FILTERS) if (params.get(name)) asked.append("where", `${name}=${params.get(name)}`);
  return asked;
}

const count = (n) => n.toLocaleString("en-US");
const pct = (value) => (value == null ? "–" : `${(value * 100).toFixed(1)}%`);
const ms = (value) => (value == null ? "–" : Math.round(value).toLocaleString("en-US"));

// Dollars with the digits that matter, as the CLI writes them.
function money(value) {
  if (value == null) return "–";
  if (value >= 1) return `$${value.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  return value >= 0.01 ? `$${value.toFixed(4)}` : `$${value.toFixed(6)}`;
}

function duration(value) {
  if (value == null) return "–";
  if (value < 1000) return `${Math.round(value)} ms`;
  return value < 3_600_000 ? `${(value / 1000).toFixed(1)} s` : `${(value / 3_600_000).toFixed(1)} h`;
}

function cell(tr, value, numeric = false) {
  const td = tr.insertCell();
  if (numeric) td.className = "num";
  td.textContent = value;
  return td;
}

function render(cache) {
  $("kpi-cache-hit-ratio").textContent = pct(cache.hit_ratio);
  $("kpi-cache-saved").textContent = money(cache.saved_usd);
  $("kpi-cache-time").textContent = duration(cache.time_avoided_ms);
  $("kpi-guardrail-blocks").textContent = count(cache.content_filter_blocks);
  const levels = $("cache-levels");
  levels.innerHTML = `<thead><tr><th>level</th><th class="num">calls</th><th class="num">share</th>
    <th class="num">spend</th><th class="num">spend avoided</th><th class="num">time avoided</th>
    <th class="num">p50</th><th class="num">p95</th></tr></thead>`;
  const body = levels.createTBody();
  for (const level of cache.levels) {
    const tr = body.insertRow();
    tr.dataset.level = level.level;
    const hit = HITS.has(level.level);
    cell(tr, level.level);
    cell(tr, count(level.calls), true);
    cell(tr, pct(level.share), true);
    cell(tr, money(level.cost_usd), true);
    cell(tr, hit ? money(level.saved_usd) : "", true);
    cell(tr, hit ? duration(level.time_avoided_ms) : "", true);
    cell(tr, ms(level.latency_p50_ms), true);
    cell(tr, ms(level.latency_p95_ms), true);
  }
  const actions = $("guardrail-actions");
  actions.innerHTML = `<thead><tr><th>guardrail</th><th>action</th><th class="num">calls</th></tr></thead>`;
  const listed = actions.createTBody();
  for (const item of cache.guardrails) {
    const tr = listed.insertRow();
    tr.dataset.guardrail = item.guardrail;
    tr.dataset.action = item.action;
    cell(tr, item.guardrail);
    cell(tr, item.action);
    cell(tr, count(item.calls), true);
  }
  const notes = [];
  if (!cache.hits) notes.push("no cache hits in this window");
  if (!cache.guardrails.length) notes.push("no guardrail acted in this window");
  const unestimated = cache.levels.reduce((sum, level) => sum + level.unestimated_hits, 0);
  notes.push(`time avoided is ${cache.time_avoided_method}`);
  if (unestimated) notes.push(`${count(unestimated)} hits of models without a successful miss are not estimated`);
  notes.push("hit and miss percentiles only; the uncached calls' are the latency row's");
  $("cache-notes").textContent = notes.join(" · ");
}

function fail(message) {
  $("cache-notes").textContent = message;
  $("cache-levels").replaceChildren();
  $("guardrail-actions").replaceChildren();
}

async function load() {
  row().dataset.state = "loading";
  try {
    const reply = await fetch(`api/v1/cache?${query()}`, { credentials: "same-origin" });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) fail(body.error || `cache: HTTP ${reply.status}`);
    else render(body.cache);
  } catch (error) {
    fail(error.message);
  }
  row().dataset.state = "ready";
  row().dataset.loads = String(Number(row().dataset.loads || 0) + 1);
}

function start() {
  let seen;
  new MutationObserver(() => {
    if (document.body.dataset.loads === seen || document.body.dataset.state !== "ready") return;
    seen = document.body.dataset.loads;
    load();
  }).observe(document.body, { attributes: true, attributeFilter: ["data-loads", "data-state"] });
}

start();
