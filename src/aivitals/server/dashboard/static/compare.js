// The dashboard's compare row: two values of a field side by side, from GET api/v1/compare
// (the same comparison as `aivitals compare`). It reads the range and filters from the address's
// hash, which dashboard.js keeps, and compares again after each of the dashboard's refreshes.

const FIELDS = ["prompt_version", "model", "feature", "team", "provider", "environment"];
const FILTERS = ["model", "provider", "feature", "team", "user", "environment"];
const LABELS = {
  latency_p50_ms: "latency p50 (ms)",
  latency_p95_ms: "latency p95 (ms)",
  error_rate: "error rate",
  refusal_rate: "refusal rate",
  cost_per_call_usd: "cost per call (USD)",
  input_tokens_per_call: "input tokens per call",
  output_tokens_per_call: "output tokens per call",
};
const PILLS = { regression: "down", improvement: "ok", "not enough data": "degraded" };

const $ = (id) => document.getElementById(id);
const label = (name) => LABELS[name] ?? name.replace(/^score\./, "");
const row = () => $("compare");

function view() {
  const params = new URLSearchParams(location.hash.slice(1));
  const where = FILTERS.filter((name) => params.get(name)).map((name) => [name, params.get(name)]);
  return { since: params.get("since") || "24h", where };
}

// A figure as the table shows it: shares in %, their differences in points, money to 6 places.
function shown(measure, value, signed = false) {
  if (value == null) return "–";
  const sign = signed && value > 0 ? "+" : "";
  if (measure.kind === "rate") return signed ? `${sign}${(value * 100).toFixed(1)} pp` : `${(value * 100).toFixed(1)}%`;
  if (measure.kind === "latency") return `${sign}${Math.round(value).toLocaleString("en-US")}`;
  if (measure.name.endsWith("_usd")) return `${sign}${value.toFixed(6)}`;
  return `${sign}${value.toLocaleString("en-US", { maximumFractionDigits: Math.abs(value) < 10 ? 3 : 1 })}`;
}

function cell(tr, value, numeric = false) {
  const td = tr.insertCell();
  if (numeric) td.className = "num";
  td.append(value);
  return td;
}

function verdict(measure) {
  const span = document.createElement("span");
  const kind = PILLS[measure.verdict];
  if (kind) span.className = `pill ${kind}`;
  span.textContent = measure.verdict;
  return span;
}

function render(comparison) {
  const { a, b, by } = comparison;
  const side = (group) => `${group.value || "(none)"} (${group.calls.toLocaleString("en-US")} calls)`;
  $("compare-title").textContent = `${by}: B ${side(b)} against A ${side(a)}`;
  const table = $("compare-table");
  table.innerHTML = `<thead><tr><th>measure</th><th class="num">A</th><th class="num">B</th>
    <th class="num">B − A</th><th class="num">relative</th><th class="num">95% interval</th>
    <th class="num">p (adjusted)</th><th>verdict</th></tr></thead>`;
  const body = table.createTBody();
  for (const m of comparison.measures) {
    const tr = body.insertRow();
    tr.dataset.measure = m.name;
    tr.dataset.verdict = m.verdict;
    cell(tr, label(m.name));
    cell(tr, shown(m, m.a), true);
    cell(tr, shown(m, m.b), true);
    cell(tr, shown(m, m.difference, true), true);
    cell(tr, m.relative == null ? "–" : `${m.relative > 0 ? "+" : ""}${(m.relative * 100).toFixed(1)}%`, true);
    cell(tr, m.ci_low == null ? "–" : `${shown(m, m.ci_low, true)} to ${shown(m, m.ci_high, true)}`, true);
    cell(tr, m.p_adjusted == null ? "–" : m.p_adjusted < 0.001 ? "<0.001" : m.p_adjusted.toFixed(3), true);
    cell(tr, verdict(m)).title = m.note ?? `${m.test}, p = ${m.p_value}`;
  }
  const notes = [];
  notes.push(comparison.regressions.length
    ? `regressions: ${comparison.regressions.map(label).join(", ")}`
    : "no regression");
  for (const [name, group] of [["A", a], ["B", b]]) {
    if (group.sampled) notes.push(`latency of ${name} from a sample of ${group.latency_samples.toLocaleString("en-US")} of ${group.calls.toLocaleString("en-US")} calls`);
  }
  notes.push(`significant: adjusted p below ${comparison.alpha}; under ${comparison.min_samples} calls a side, not enough data`);
  $("compare-notes").textContent = notes.join(" · ");
}

function fail(message) {
  $("compare-title").textContent = message;
  $("compare-table").replaceChildren();
  $("compare-notes").textContent = "";
}

async function compare() {
  row().dataset.state = "loading";
  const { since, where } = view();
  const by = $("compare-by").value;
  const params = new URLSearchParams({ since, by });
  for (const name of ["a", "b"]) {
    const value = $(`compare-${name}`).value.trim();
    if (value) params.set(name, value);
  }
  // The field compared by cannot also be a filter: both sides would be the same value.
  for (const [name, value] of where) if (name !== by) params.append("where", `${name}=${value}`);
  try {
    const reply = await fetch(`api/v1/compare?${params}`, { credentials: "same-origin" });
    const body = await reply.json().catch(() => ({}));
    if (!reply.ok) fail(body.error || `compare: HTTP ${reply.status}`);
    else render(body.comparison);
  } catch (error) {
    fail(error.message);
  }
  row().dataset.state = "ready";
  row().dataset.loads = String(Number(row().dataset.loads || 0) + 1);
}

async function loadValues() {
  const by = $("compare-by").value;
  const params = new URLSearchParams({ since: view().since, field: by, limit: "50" });
  const reply = await fetch(`api/v1/values?${params}`, { credentials: "same-origin" });
  const list = $("compare-values");
  list.replaceChildren();
  if (!reply.ok) return;
  const { values } = await reply.json();
  for (const { value } of values[by] ?? []) list.append(new Option(value, value));
}

function start() {
  const select = $("compare-by");
  for (const name of FIELDS) select.append(new Option(name, name));
  select.addEventListener("change", () => {
    $("compare-a").value = "";
    $("compare-b").value = "";
    loadValues().then(compare);
  });
  $("compare-form").addEventListener("submit", (event) => {
    event.preventDefault();
    compare();
  });
  // After each of the dashboard's refreshes (a new range or filter), compare again.
  let seen = document.body.dataset.loads;
  new MutationObserver(() => {
    if (document.body.dataset.loads === seen || document.body.dataset.state !== "ready") return;
    seen = document.body.dataset.loads;
    loadValues().then(compare);
  }).observe(document.body, { attributes: true, attributeFilter: ["data-loads", "data-state"] });
}

start();
