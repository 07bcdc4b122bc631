"""The receiver prices each span's call before it is built: the very call the recorder made."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import sqlalchemy

from aivitals.otlp.mapping import calls_from_traces
from aivitals.otlp.receive import OtlpReceiver
from aivitals.price_overrides import Rates
from aivitals.pricing import Pricer
from aivitals.recorder import Recorder
from aivitals.sinks.store import StoreSink
from aivitals.store import schema
from aivitals.store.rows import row_call
from aivitals.store.sql import SqlStore
from tests.support.otlp_spans import CHAT, export, span

USAGE = {"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.output_tokens": 80}


def test_a_call_priced_from_its_draft_is_the_one_the_recorder_prices_after_the_fact() -> None:
    request = export(
        span({**CHAT, **USAGE}),
        span({**CHAT, **USAGE, "aivitals.cache": "hit"}),
        span({**CHAT, **USAGE, "gen_ai.request.model": "no-such-model-anywhere"}),
    )
    recorder = Recorder()
    after = [recorder.record(call) for call in calls_from_traces(request).calls]
    before = calls_from_traces(request, price=recorder.price_draft).calls
    assert before == after
    # gpt-4o-mini at $0.15 and $0.60 a million tokens; a cache hit costs 0; no price, None.
    assert [call.cost_usd for call in before] == [Decimal("0.000228"), Decimal(0), None]
    assert [call.price_source for call in before][1:] == ["cache", None]


def test_a_price_the_record_refuses_leaves_the_call_unpriced_as_before(tmp_path: Path) -> None:
    # $2,000,000,000 a million input tokens: 1,200 tokens cost $2,400,000, past a call's bound.
    pricer = Pricer(
        overrides={
            (None, "acme-huge"): Rates(input_mtok=Decimal(2_000_000_000), output_mtok=Decimal(1))
        },
        use_catalog=False,
    )
    store = SqlStore.open(tmp_path / "aivitals.db")
    recorder = Recorder(pricer=pricer, batch_sinks=[StoreSink(store)])
    request = export(span({**CHAT, **USAGE, "gen_ai.request.model": "acme-huge"}))
    response, outcome = OtlpReceiver().traces(request, recorder=recorder)
    recorder.close()
    assert outcome.counts == {"recorded": 1, "not_model": 0, "rejected": 0}
    assert not response.HasField("partial_success")
    with store.engine.connect() as connection:
        [call] = [row_call(row) for row in connection.execute(sqlalchemy.select(schema.calls))]
    assert (call.model, call.input_tokens, call.cost_usd, call.price_source) == (
        "acme-huge",
        1200,
        None,
        None,
    )
    store.close()
