"""A span's token counts as one `TokenUsage`, whichever convention named them.

The GenAI conventions say ``gen_ai.usage.input_tokens`` *includes* cached reads and cache writes
and the output includes reasoning, and most instrumentations follow them (OpenLLMetry and
OpenInference add Anthropic's cache fields to its ``input_tokens`` before they report it). Some
senders pass a provider's own figures through (Anthropic's input without the cache, Gemini's
output without the thoughts): that is recognised where the figures prove it, by parts larger than
their whole or by a total that only adds up the other way, and then the parts are added.

>>> from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
>>> from aivitals.otlp.facts import DEFAULT, table_for
>>> def usage(counts):
...     kvs = [KeyValue(key=k, value=AnyValue(int_value=v)) for k, v in counts.items()]
...     return usage_of(*table_for(DEFAULT).read(kvs))
>>> usage({"gen_ai.usage.input_tokens": 1200, "gen_ai.usage.cache_read.input_tokens": 1024,
...        "gen_ai.usage.output_tokens": 80})
TokenUsage(input_tokens=1200, output_tokens=80, cached_input_tokens=1024, cache_write_tokens=0, reasoning_tokens=0, cache_write_1h_tokens=0, server_tool_uses={})

Anthropic's way (input 50 beside 1,000 cached: the input cannot be the total):

>>> usage({"gen_ai.usage.input_tokens": 50, "gen_ai.usage.cache_read_input_tokens": 1000,
...        "gen_ai.usage.output_tokens": 30}).input_tokens
1050
"""

from __future__ import annotations

from aivitals.otlp.facts import CACHE_READ, CACHE_WRITE, INPUT, OUTPUT, REASONING, TOTAL
from aivitals.otlp.values import Value
from aivitals.usage import TokenUsage

NO_TOKENS = TokenUsage()


class BadAttribute(ValueError):
    """A span attribute whose value cannot be what its name says; the message names it."""


def count_of(values: list[Value], names: list[str | None], fact: int) -> int | None:
    """The fact as a token count, None when absent; raises `BadAttribute` naming the attribute."""
    value = values[fact]
    if value is None:
        return None
    if type(value) is int and value >= 0:
        return value
    # Some exporters send counts as doubles or text; a whole number is still a count.
    if type(value) is float and value.is_integer() and value >= 0:
        return int(value)
    if type(value) is str and value.isdigit():
        return int(value)
    raise BadAttribute(
        f"{names[fact]}: must be a count of tokens (a whole number from 0), got {value!r}"
    )


def usage_of(values: list[Value], names: list[str | None]) -> TokenUsage:
    """The span's tokens in aivitals' convention (input includes the cache, output reasoning),
    from its facts (`aivitals.otlp.facts`)."""
    given_input = count_of(values, names, INPUT)
    given_output = count_of(values, names, OUTPUT)
    total = count_of(values, names, TOTAL)
    read = count_of(values, names, CACHE_READ) or 0
    write = count_of(values, names, CACHE_WRITE) or 0
    reasoning = count_of(values, names, REASONING) or 0
    if given_input is None and given_output is None and total is None and not read + write:
        return NO_TOKENS
    output = given_output or 0
    if given_input is None:
        # Only a total (an embedding, say): what the output does not account for was input.
        given_input = max((total or 0) - output, 0)
    cached = read + write
    cache_outside = cached > given_input
    reasoning_outside = reasoning > output
    if total is not None and total != given_input + output and total > 0:
        if cached and total == given_input + cached + output:
            cache_outside = True
        elif reasoning and total == given_input + output + reasoning:
            reasoning_outside = True
        elif cached and reasoning and total == given_input + cached + output + reasoning:
            cache_outside = reasoning_outside = True
    return TokenUsage(
        input_tokens=given_input + cached if cache_outside else given_input,
        output_tokens=output + reasoning if reasoning_outside else output,
        cached_input_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=reasoning,
    )
