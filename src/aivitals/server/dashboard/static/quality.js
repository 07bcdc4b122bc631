// The quality row's evaluator rates and labelled outcomes, from GET api/v1/quality/groups (the
// same figures as `aivitals quality`). It reads the range and filters from the address's hash,
// which dashboard.js keeps; dashboard.js calls `loadQualityRates` in each refresh, so its count of
// finished refreshes (data-loads) covers these panels too.

const FILTERS = ["model", "provider", "feature", "team", "user", "environment"];
const RATES = [
  ["refusal", "refusal rate"],
  ["empty", "empty answers"],
  ["truncated", "cut by a length limit"],
  ["invalid_json", "invalid JSON"],
  ["pii_leak", "PII leaks"],
];

const $ = (id) => document.getElementById(id);
const pct = (n) => (n == null ? "–" : `${(n * 100).toFixed(n < 0.1 ? 2 : 1)}%`);
const fixed = (n) => (n == null ? "–" : n.toFixed(3));

async function groups(by) {
  const hash = new URLSearchParams(location.hash.slice(1));
  const params = new URLSearchParams({ since: hash.get("since") || "24h", by });
  for (const name of FILTERS) if (hash.get(name)) params.append("where", `${name}=${hash.get(name)}`);
  const reply = await fetch(`api/v1/quality/groups?${params}`, { credentials: "same-origin" });
  const body = await reply.json().catch(() => ({}));
  if (!reply.ok) throw new Error(body.error || `quality: HTTP ${reply.status}`);
  return body;
}

function renderKpis(total) {
  const box = $("kpi-quality-rates");
  box.replaceChildren();
  const rates = total?.rates ?? {};
  for (const [name, caption] of RATES) {
    if (!rates[name]) continue;
    const kpi = document.createElement("div");
    kpi.className = "kpi";
    kpi.dataset.testid = `kpi-rate-${name}`;
    kpi.innerHTML = `<span></span><b></b>`;
    kpi.querySelector("span").textContent = caption;
    // Leaks as a count: one is already one too many.
    const { rate, count } = rates[name];
    kpi.querySelector("b").textContent = name === "pii_leak" ? String(Math.round(rate * count)) : pct(rate);
    box.append(kpi);
  }
  if (!box.children.length) box.innerHTML = `<p class="empty">no evaluated answers in this range</p>`;
}

function renderChart(byModel) {
  const models = byModel.groups.map((g) => g.group.model ?? "(none)");
  const traces = RATES.filter(([name]) => byModel.groups.some((g) => g.rates[name])).map(([name, caption]) => ({
    type: "bar", name: caption, x: models, y: byModel.groups.map((g) => (g.rates[name] ? 100 * g.rates[name].rate : null)),
  }));
  const empty = !traces.length;
  Plotly.react($("chart-quality-rates"), traces, {
    margin: { l: 50, r: 10, t: 8, b: 40 },
    font: { family: "system-ui, sans-serif", size: 11, color: "#1f2430" },
    barmode: "group", showlegend: traces.length > 1, legend: { orientation: "h", y: -0.25 },
    yaxis: { automargin: true, rangemode: "tozero", ticksuffix: "%" }, xaxis: { automargin: true },
    annotations: empty ? [{ text: "no data", showarrow: false, xref: "paper", yref: "paper", x: 0.5, y: 0.5 }] : [],
  }, { displayModeBar: false, responsive: true });
}

function renderOutcomes(byModel) {
  const table = $("quality-outcomes");
  table.innerHTML = `<thead><tr><th>model</th><th>task</th><th class="num">n</th><th class="num">accuracy</th>`
    + `<th class="num">macro F1</th><th class="num">ROC AUC</th><th class="num">MAE</th><th class="num">RMSE</th></tr></thead>`;
  const body = table.createTBody();
  for (const group of byModel.groups) {
    for (const [task, m] of Object.entries(group.outcomes)) {
      const tr = body.insertRow();
      const values = [group.group.model ?? "(none)", task, String(m.count), fixed(m.accuracy), fixed(m.macro_f1),
        fixed(m.roc_auc), fixed(m.mae), fixed(m.rmse)];
      values.forEach((value, i) => {
        const td = tr.insertCell();
        td.textContent = value;
        if (i >= 2) td.className = "num";
      });
    }
  }
  const note = byModel.outcomes_unavailable;
  if (!body.rows.length) {
    body.innerHTML = `<tr><td class="empty" colspan="8"></td></tr>`;
    body.querySelector("td").textContent = note ?? "no labelled outcomes in this range";
  }
}

export async function loadQualityRates() {
  try {
    const [total, byModel] = await Promise.all([groups(""), groups("model")]);
    renderKpis(total.groups[0]);
    renderChart(byModel);
    renderOutcomes(byModel);
  } catch (error) {
    $("kpi-quality-rates").innerHTML = `<p class="empty"></p>`;
    $("kpi-quality-rates").firstChild.textContent = error.message;
  }
}
