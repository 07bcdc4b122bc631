"""The dashboard's five rows (docs/design.md): cost, latency, tokens, quality, operational health.

Each row function adds a row and its panels to a dashboard builder and returns it. Queries name
their metrics by the schema's declarations (`aivitals.metric_schema`), never by a string.

The builder places panels left to right and starts a new line only once one is full, never
before a panel that would overflow it: in each row the widths (`span`) must add up to 24 per
line (a test checks that no panel runs past the grid).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import heatmap, statetimeline, table
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, StackingConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard, FieldColor, Row
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode, StackingMode
from grafana_foundation_sdk.models.dashboard import FieldColorModeId
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from aivitals.dashboards.panels import (
    DATASOURCE,
    bars_panel,
    query,
    stat_panel,
    thresholds,
    timeseries_panel,
)
from aivitals.dashboards.promql import increase, quantile, rate, selector
from aivitals.metric_schema import (
    CACHE_REQUESTS,
    CACHE_SAVED,
    CONTEXT_UTILISATION,
    COST,
    DROPPED_CALLS,
    DROPPED_SCORES,
    DURATION,
    EVALUATIONS,
    EVALUATOR_NAMES,
    GUARDRAIL_ACTIONS,
    IN_FLIGHT,
    INPUT_TOKENS,
    OUTPUT_SPEED,
    OUTPUT_TOKENS,
    PROCESS_CPU,
    PROCESS_RESIDENT_MEMORY,
    QUALITY,
    QUEUE_DEPTH,
    REQUESTS,
    SINK_ERRORS,
    TIME_TO_FIRST_TOKEN,
    TOKENS,
    UNPRICED,
)

_HIT = 'result="hit"'
_LOOKUP = 'result!="bypass"'
_LOW_SCORE = 'le="0.7"'
_ERROR = 'status="error"'
# The evaluators' 0/1 scores are rates of a fault, shown as rates; the means are the other scores.
_NOT_EVALUATOR = f'name!~"{"|".join(EVALUATOR_NAMES)}"'
_FOUND = 'result="true"'
_FAULTS = 'name=~"refusal|empty|truncated|pii_leak"'
_LEAK = 'name="pii_leak"'

_MODEL_ONLY = ("provider", "model")
"""The filters both sides of a ratio of cost (by feature and team) over requests (neither) share."""


def cost_row(dashboard: Dashboard) -> Dashboard:
    """Cost overview: total spend, cost per request, spend by model, feature and team."""
    spend = f"sum({increase(COST)})"
    # aivitals_requests_total has no feature or team label: both sides of cost per request follow
    # provider and model only, or a feature filter would divide its spend by every request.
    priced = f"sum({increase(COST, filters=_MODEL_ONLY)})"
    model_spend = f"sum by (model) ({rate(COST, filters=_MODEL_ONLY)})"
    cache = CACHE_REQUESTS
    return (
        dashboard.with_row(Row("Cost overview"))
        .with_panel(
            stat_panel(
                "Total spend", "Spend on priced calls in the time range.", spend, unit="currencyUSD"
            )
        )
        .with_panel(
            stat_panel(
                "Cost per request",
                "Spend over requests in the time range (follows the provider and model filters).",
                f"{priced} / sum({increase(REQUESTS)})",
                unit="currencyUSD",
                decimals=5,
            )
        )
        .with_panel(
            stat_panel(
                "Requests",
                "Model calls in the time range, every outcome.",
                f"sum({increase(REQUESTS)})",
                unit="short",
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Unpriced calls",
                "Calls whose model has no known price: recorded without a cost, never guessed. "
                "Add the model to a price override file (docs/pricing.md).",
                # No series until the first unpriced call: that is zero, not "no data".
                f"sum({increase(UNPRICED)}) or vector(0)",
                unit="short",
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Saved by the response cache",
                "What the answers replayed from the cache cost when first made.",
                f"sum({increase(CACHE_SAVED)}) or vector(0)",
                unit="currencyUSD",
            )
        )
        .with_panel(
            stat_panel(
                "Cache hit ratio",
                "Response-cache hits over hits and misses in the time range.",
                f"sum({increase(cache, '', _HIT)}) / sum({increase(cache, '', _LOOKUP)})",
                unit="percentunit",
            )
        )
        .with_panel(
            timeseries_panel(
                "Spend per hour by model",
                "Spend rate in US dollars per hour, stacked: the top line is the total.",
                query(f"3600 * sum by (model) ({rate(COST)})", legend="{{model}}"),
                unit="currencyUSD",
            )
            .stacking(StackingConfig().mode(StackingMode.NORMAL))
            .fill_opacity(30)
        )
        .with_panel(
            timeseries_panel(
                "Cost per request by model",
                "Spend over requests, per model (follows the provider and model filters).",
                query(f"{model_spend} / sum by (model) ({rate(REQUESTS)})", legend="{{model}}"),
                unit="currencyUSD",
            )
        )
        .with_panel(
            timeseries_panel(
                "Cache hit ratio by level",
                "Share of response-cache lookups answered by each level (exact, semantic); the "
                "levels add up to the hit ratio. `aivitals report` and the dashboard's cache row "
                "add the spend and upstream time avoided and the latency of a hit against a miss.",
                query(
                    f"sum by (level) ({rate(cache, '', _HIT)})"
                    f" / ignoring(level) group_left sum({rate(cache, '', _LOOKUP)})",
                    legend="{{level}}",
                ),
                unit="percentunit",
                span=24,
            )
        )
        .with_panel(
            bars_panel(
                "Spend by model",
                "In the time range.",
                f"sum by (model) ({increase(COST)})",
                legend="{{model}}",
                unit="currencyUSD",
            )
        )
        .with_panel(
            bars_panel(
                "Spend by feature",
                "In the time range; a blank name is the calls without a feature.",
                f"sum by (feature) ({increase(COST)})",
                legend="{{feature}}",
                unit="currencyUSD",
            )
        )
        .with_panel(
            bars_panel(
                "Spend by team",
                "In the time range; a blank name is the calls without a team.",
                f"sum by (team) ({increase(COST)})",
                legend="{{team}}",
                unit="currencyUSD",
            )
        )
    )


def latency_row(dashboard: Dashboard) -> Dashboard:
    """Latency: p50/p95/p99 over time, per model, the distribution, time to first token."""
    ttft = TIME_TO_FIRST_TOKEN
    return (
        dashboard.with_row(Row("Latency"))
        .with_panel(
            timeseries_panel(
                "End-to-end latency: p50, p95, p99",
                "Percentiles of every call's latency, from the histogram's buckets.",
                *(
                    query(quantile(q, DURATION), legend=f"p{round(q * 100)}", exemplars=q == 0.99)
                    for q in (0.5, 0.95, 0.99)
                ),
                unit="s",
            )
            .thresholds(thresholds((None, "green"), (5, "orange"), (10, "red")))
            .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        )
        .with_panel(
            timeseries_panel(
                "p95 latency by model",
                "The default alert warns above 5 s (p95) and pages above 10 s (p99).",
                query(quantile(0.95, DURATION, by="model"), legend="{{model}}"),
                unit="s",
            )
        )
        .with_panel(
            heatmap.Panel()
            .title("Latency distribution")
            .description("Calls per latency bucket over time (bucket bounds 0.01 s to 81.92 s).")
            .datasource(DATASOURCE)
            .with_target(
                query(f"sum by (le) ({rate(DURATION, '_bucket')})", legend="{{le}}").format(
                    PromQueryFormat.HEATMAP
                )
            )
            # The buckets are already counted by Prometheus: no recalculation in the browser.
            .calculate(False)
            .span(12)
            .height(8)
        )
        .with_panel(
            timeseries_panel(
                "Time to first token: p50, p95",
                "Streams only: how long the caller waited for the first chunk.",
                *(
                    query(quantile(q, ttft), legend=f"p{round(q * 100)}", exemplars=q == 0.95)
                    for q in (0.5, 0.95)
                ),
                unit="s",
            )
        )
        .with_panel(
            timeseries_panel(
                "Output tokens per second (median) by model",
                "Generation speed after the first token.",
                query(
                    quantile(0.5, OUTPUT_SPEED, by="model"),
                    legend="{{model}}",
                ),
                unit="short",
            )
        )
        .with_panel(
            timeseries_panel(
                "Context window utilisation (p95) by model",
                "Input tokens over the model's context window.",
                query(
                    quantile(0.95, CONTEXT_UTILISATION, by="model"),
                    legend="{{model}}",
                ),
                unit="percentunit",
            )
        )
    )


def tokens_row(dashboard: Dashboard) -> Dashboard:
    """Token usage: input and output by model, tokens per request, input/output ratio, and the
    parts of each (prompt-cache reads and writes, reasoning).

    ``type`` of the tokens metric, like ``kind`` of the input and output metrics, is a partition:
    summing over it counts every token once.
    """

    def of_type(kind: str) -> str:
        return f'type="{kind}"'

    per_model = "sum by (model) ({})"
    return (
        dashboard.with_row(Row("Token usage"))
        .with_panel(
            timeseries_panel(
                "Tokens per second by model: input and output",
                "Input includes prompt-cache reads and writes; output includes reasoning.",
                query(f"sum by (model, type) ({rate(TOKENS)})", legend="{{model}} {{type}}"),
                unit="short",
            )
        )
        .with_panel(
            bars_panel(
                "Tokens by model and type",
                "In the time range.",
                f"sum by (model, type) ({increase(TOKENS)})",
                legend="{{model}} {{type}}",
                unit="short",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Tokens per request by model",
                "Average input and output tokens per call.",
                *(
                    query(
                        per_model.format(rate(TOKENS, "", of_type(kind)))
                        + " / "
                        + per_model.format(rate(REQUESTS)),
                        legend=f"{{{{model}}}} {kind}",
                    )
                    for kind in ("input", "output")
                ),
                unit="short",
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Input/output ratio by model",
                "Input tokens per output token: a prompt that grows shows here first.",
                query(
                    per_model.format(rate(TOKENS, "", of_type("input")))
                    + " / "
                    + per_model.format(rate(TOKENS, "", of_type("output"))),
                    legend="{{model}}",
                ),
                unit="short",
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Cached share of input tokens by model",
                "Prompt-cache reads over all input tokens: higher is cheaper.",
                query(
                    per_model.format(rate(INPUT_TOKENS, "", 'kind="cache_read"'))
                    + " / "
                    + per_model.format(rate(INPUT_TOKENS)),
                    legend="{{model}}",
                ),
                unit="percentunit",
                span=8,
            )
        )
        .with_panel(
            timeseries_panel(
                "Input tokens per second by kind",
                "Stacked: uncached, read from the prompt cache, written to it; the top line is "
                "all input.",
                query(f"sum by (kind) ({rate(INPUT_TOKENS)})", legend="{{kind}}"),
                unit="short",
            )
            .stacking(StackingConfig().mode(StackingMode.NORMAL))
            .fill_opacity(30)
        )
        .with_panel(
            timeseries_panel(
                "Output tokens per second by kind",
                "Stacked: reasoning and the rest; the top line is all output.",
                query(f"sum by (kind) ({rate(OUTPUT_TOKENS)})", legend="{{kind}}"),
                unit="short",
            )
            .stacking(StackingConfig().mode(StackingMode.NORMAL))
            .fill_opacity(30)
        )
        .with_panel(
            stat_panel(
                "Tokens per request",
                "Input plus output tokens per call in the time range.",
                f"sum({increase(TOKENS)}) / sum({increase(REQUESTS)})",
                unit="short",
                span=12,
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Tokens",
                "Input plus output tokens in the time range.",
                f"sum({increase(TOKENS)})",
                unit="short",
                span=12,
                decimals=0,
            )
        )
    )


def quality_row(dashboard: Dashboard) -> Dashboard:
    """Quality: mean scores over time, by feature and model, share of low scores; the
    evaluators' rates (refusal, empty, truncated, invalid JSON, PII leak) and the leaks."""

    def mean(by: str, *, over_range: bool) -> str:
        # A histogram's mean is its sum over its count, both over the same window.
        window = increase if over_range else rate
        total = window(QUALITY, "_sum", _NOT_EVALUATOR)
        count = window(QUALITY, "_count", _NOT_EVALUATOR)
        return f"sum by ({by}) ({total}) / sum by ({by}) ({count})"

    def share(by: str, found: str, of: str, *, over_range: bool = False) -> str:
        # A verdict's series appears with its first such verdict: until then the share is 0,
        # not "No data" (no invalid JSON yet is good news).
        window = increase if over_range else rate
        evaluated = f"sum by ({by}) ({window(EVALUATIONS, '', of)})"
        return f"(sum by ({by}) ({window(EVALUATIONS, '', found, of)}) or {evaluated} * 0) / {evaluated}"

    return (
        dashboard.with_row(Row("Quality"))
        .with_panel(
            timeseries_panel(
                "Mean score over time by score name",
                "Scores normalised to 0..1. The default alerts warn below 0.7 and page below 0.5.",
                query(mean("name", over_range=False), legend="{{name}}"),
                unit="percentunit",
            )
            .thresholds(thresholds((None, "red"), (0.5, "orange"), (0.7, "green")))
            .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
        )
        .with_panel(
            timeseries_panel(
                "Share of scores below 0.7",
                "Scores at or under 0.7 (a bucket bound) over all scores.",
                query(
                    f"sum by (name) ({rate(QUALITY, '_bucket', _LOW_SCORE, _NOT_EVALUATOR)})"
                    f" / sum by (name) ({rate(QUALITY, '_count', _NOT_EVALUATOR)})",
                    legend="{{name}}",
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            bars_panel(
                "Mean score by feature",
                "In the time range; a blank name is the calls without a feature.",
                mean("feature, name", over_range=True),
                legend="{{feature}} {{name}}",
                unit="percentunit",
            )
        )
        .with_panel(
            bars_panel(
                "Mean score by model",
                "In the time range.",
                mean("model, name", over_range=True),
                legend="{{model}} {{name}}",
                unit="percentunit",
            )
        )
        .with_panel(
            stat_panel(
                "Scores recorded",
                "Quality scores in the time range.",
                f"sum({increase(QUALITY, '_count')})",
                unit="short",
                span=8,
                decimals=0,
            )
        )
        .with_panel(
            timeseries_panel(
                "Evaluator rates over time",
                "Share of evaluated answers refused, empty, cut by a length limit, leaking "
                "personal data or a secret, and (B) not valid JSON of those that asked for JSON. "
                "The default alerts warn above a 5% refusal rate and page on any leak.",
                query(share("name", _FOUND, _FAULTS), legend="{{name}}"),
                query(share("name", 'result="false"', 'name="json_valid"'), legend="invalid JSON"),
                unit="percentunit",
            )
        )
        .with_panel(
            bars_panel(
                "Refusal rate by model",
                "In the time range: refused answers over evaluated ones.",
                share("model", _FOUND, 'name="refusal"', over_range=True),
                legend="{{model}}",
                unit="percentunit",
            )
        )
        .with_panel(
            stat_panel(
                "PII leaks",
                "Answers with an email, phone or card number, an IBAN or a secret, in the time "
                "range.",
                f"sum({increase(EVALUATIONS, '', _FOUND, _LEAK)}) or vector(0)",
                unit="short",
                decimals=0,
            ).thresholds(thresholds((None, "green"), (1, "red")))
        )
    )


def health_row(dashboard: Dashboard) -> Dashboard:
    """Operational health: volume, errors, provider status, active alerts, the process."""
    errors = rate(REQUESTS, "", _ERROR)
    # A provider without errors has no error series: `or ... * 0` keeps it on the chart at 0.
    provider_errors = (
        f"(sum by (provider) ({errors}) or 0 * sum by (provider) ({rate(REQUESTS)}))"
        f" / sum by (provider) ({rate(REQUESTS)})"
    )
    return (
        dashboard.with_row(Row("Operational health"))
        .with_panel(
            timeseries_panel(
                "Requests per second by status",
                "Every model call: ok, error, cancelled.",
                query(f"sum by (status) ({rate(REQUESTS)})", legend="{{status}}"),
                unit="reqps",
            )
            .stacking(StackingConfig().mode(StackingMode.NORMAL))
            .fill_opacity(30)
        )
        .with_panel(
            timeseries_panel(
                "Error rate by type",
                "Errors of each type over all requests; the default alert warns above 5%.",
                query(
                    f"sum by (error_type) ({errors})"
                    f" / ignoring(error_type) group_left sum({rate(REQUESTS)})",
                    legend="{{error_type}}",
                ),
                unit="percentunit",
            )
        )
        .with_panel(
            statetimeline.Panel()
            .title("Provider status")
            .description(
                "Share of each provider's calls that failed: green under 5%, red over 20%."
            )
            .datasource(DATASOURCE)
            .with_target(query(provider_errors, legend="{{provider}}"))
            .unit("percentunit")
            .thresholds(thresholds((None, "green"), (0.05, "orange"), (0.2, "red")))
            .color_scheme(FieldColor().mode(FieldColorModeId.THRESHOLDS))
            .span(12)
            .height(8)
        )
        .with_panel(
            table.Panel()
            .title("Active alerts")
            .description(
                "Alerts pending or firing in Prometheus (load the rules of "
                "`aivitals alerts export --prometheus`)."
            )
            .datasource(DATASOURCE)
            .with_target(
                query(
                    'sum by (alertname, alertstate, severity) (ALERTS{alertname=~".+"})',
                    instant=True,
                ).format(PromQueryFormat.TABLE)
            )
            .span(12)
            .height(8)
        )
        .with_panel(
            stat_panel(
                "Error rate",
                "Failed calls over all calls in the time range.",
                f"(sum({increase(REQUESTS, '', _ERROR)}) or vector(0)) / sum({increase(REQUESTS)})",
                unit="percentunit",
                span=4,
            )
        )
        .with_panel(
            stat_panel(
                "In flight",
                "Model calls started and not yet finished.",
                f"sum({selector(IN_FLIGHT)}) or vector(0)",
                unit="short",
                span=4,
                decimals=0,
            )
        )
        .with_panel(
            stat_panel(
                "Recorder queue depth",
                "Calls and scores waiting for the store and exports.",
                f"sum({selector(QUEUE_DEPTH)})",
                unit="short",
                span=4,
                decimals=0,
            )
        )
        .with_panel(
            timeseries_panel(
                "Dropped records and sink errors per second",
                "Anything above zero means lost data: a full queue or a failing sink.",
                query(
                    f"sum({rate(DROPPED_CALLS)})",
                    legend="dropped calls",
                ),
                query(
                    f"sum({rate(DROPPED_SCORES)})",
                    legend="dropped scores",
                ),
                query(
                    f"sum({rate(SINK_ERRORS)}) or vector(0)",
                    legend="sink errors",
                ),
                unit="short",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Server CPU",
                "CPU seconds per second of each aivitals process.",
                query(rate(PROCESS_CPU), legend="{{instance}}"),
                unit="percentunit",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Server memory",
                "Resident memory of each aivitals process.",
                query(selector(PROCESS_RESIDENT_MEMORY), legend="{{instance}}"),
                unit="bytes",
                span=12,
            )
        )
        .with_panel(
            timeseries_panel(
                "Guardrail actions per second",
                "Times each gateway guardrail acted, by side and action (redact, block, flag); "
                "a block is also a call with error type content_filter. 0 without the gateway's "
                "guardrails.",
                query(
                    f"sum by (guardrail, on, action) ({rate(GUARDRAIL_ACTIONS)}) or vector(0)",
                    legend="{{guardrail}} {{on}} {{action}}",
                ),
                unit="short",
                span=12,
            )
        )
    )


ROWS = (cost_row, latency_row, tokens_row, quality_row, health_row)
"""The rows in the order the dashboard shows them."""
