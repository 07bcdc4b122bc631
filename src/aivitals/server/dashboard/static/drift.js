// The dashboard's drift row: every signal of the current window against its baseline, from
// GET api/v1/drift (the same answer as `aivitals drift`). Its window and baseline are its own
// (a trailing baseline compares the same hours of the days before, so the window is at most a
// day); the filters come from the address's hash, which dashboard.js keeps, and it asks again
// after each of the dashboard's refreshes.

const FIELDS = ["", "model", "feature", "prompt_version", "team", "provider", "environment"];
const FILTERS = ["model", "provider", "feature", "team", "user", "environment"];
const WINDOWS = ["15m", "1h", "6h", "24h"];
const PILLS = { significant: "down", moderate: "degraded", stable: "ok", "not enough data": "cancelled" };

const $ = (id) => document.getElementById(id);
const row = () => $("drift");

function where() {
  const params = new URLSearchParams(location.hash.slice(1));
  return FILTERS.filter((name) => params.get(name)).map((name) => `${name}=${params.get(name)}`);
}

// A figure as the CLI shows it: rates in %, costs in dollars, the rest as whole numbers.
function shown(result, value) {
  if (value == null) return "–";
  if (result.kind === "rate") return `${(value * 100).toFixed(1)}%`;
  if (result.signal === "cost_usd") return `$${value.toPrecision(2)}`;
  return value >= 10 ? Math.round(value).toLocaleString("en-US") : value.toPrecision(3);
}

function statistic(result) {
  if (result.value == null) return "–";
  return result.statistic === "psi" ? `PSI ${result.value.toFixed(2)}` : `h ${result.value > 0 ? "+" : ""}${result.value.toFixed(2)}`;
}

function cell(tr, value, numeric = false) {
  const td = tr.insertCell();
  if (numeric) td.className = "num";
  td.append(value);
  return td;
}

function pill(result) {
  const span = document.createElement("span");
  span.className = `pill ${PILLS[result.verdict]}`;
  span.textContent = result.verdict;
  return span;
}

function render(drift) {
  $("drift-title").textContent = `last ${$("drift-window").value} against ${drift.baseline} (distributions: p50)`;
  const table = $("drift-table");
  const grouped = drift.by.length > 0;
  table.innerHTML = `<thead><tr>${grouped ? `<th>${drift.by.join(", ")}</th>` : ""}<th>signal</th>
    <th class="num">baseline</th><th class="num">current</th><th class="num">calls</th>
    <th class="num">statistic</th><th class="num">p (adjusted)</th><th>verdict</th></tr></thead>`;
  const body = table.createTBody();
  // Signals without data on either side (an evaluator not run) are named below, not listed.
  const empty = new Set();
  for (const r of drift.results) {
    if (!r.baseline_n && !r.current_n) {
      empty.add(r.signal);
      continue;
    }
    const tr = body.insertRow();
    tr.dataset.signal = r.signal;
    tr.dataset.verdict = r.verdict;
    tr.dataset.group = Object.values(r.group).map((v) => v ?? "").join(",");
    if (grouped) cell(tr, Object.values(r.group).map((v) => v ?? "(none)").join(", "));
    cell(tr, r.signal);
    cell(tr, shown(r, r.baseline), true);
    cell(tr, shown(r, r.current), true);
    cell(tr, `${r.baseline_n.toLocaleString("en-US")} / ${r.current_n.toLocaleString("en-US")}`, true);
    cell(tr, statistic(r), true);
    cell(tr, r.p_adjusted == null ? "–" : r.p_adjusted < 0.001 ? "<0.001" : r.p_adjusted.toFixed(3), true);
    cell(tr, pill(r)).title = r.summary;
  }
  const drifted = drift.results.filter((r) => r.verdict === "moderate" || r.verdict === "significant");
  const notes = [drifted.length ? drifted.map((r) => r.summary).join(" · ") : "no drift"];
  if (empty.size) notes.push(`no data on either side: ${[...empty].join(", ")}`);
  notes.push(`drifted: past the stable band with adjusted p below ${drift.alpha}; under ${drift.min_samples} a side, not enough data`);
  $("drift-notes").textContent = notes.join(" · ");
}

function fail(message) {
  $("drift-title").textContent = message;
  $("drift-table").replaceChildren();
  $("drift-notes").textContent = "";
}

async function load() {
  row().dataset.state = "loading";
  const params = new URLSearchParams({ window: $("drift-window").value, baseline: $("drift-baseline").value.trim() || "7d" });
  const by = $("drift-by").value;
  if (by) params.set("by", by);
  for (const item of where()) params.append("where", item);
  try {
    const reply = await fetch(`api/v1/drift?${params}`, { credentials: "same-origin" });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) fail(body.error || `drift: HTTP ${reply.status}`);
    else render(body.drift);
  } catch (error) {
    fail(error.message);
  }
  row().dataset.state = "ready";
  row().dataset.loads = String(Number(row().dataset.loads || 0) + 1);
}

function start() {
  for (const name of FIELDS) $("drift-by").append(new Option(name || "(all calls)", name));
  for (const name of WINDOWS) $("drift-window").append(new Option(`last ${name}`, name));
  $("drift-window").value = "1h";
  $("drift-form").addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  for (const id of ["drift-by", "drift-window"]) $(id).addEventListener("change", load);
  let seen = document.body.dataset.loads;
  new MutationObserver(() => {
    if (document.body.dataset.loads === seen || document.body.dataset.state !== "ready") return;
    seen = document.body.dataset.loads;
    load();
  }).observe(document.body, { attributes: true, attributeFilter: ["data-loads", "data-state"] });
}

start();
