"""The ``json_valid`` evaluator: for calls that asked for JSON or made tool calls.

The answer (``response_format`` ``json_object`` or ``json_schema``), and each tool call's
arguments, must parse as JSON, and match the schema when the request gave one (the
``json_schema`` response format's, a tool's declared parameters). Any other call gets no score.

>>> from aivitals.content import CallContent, ToolCallContent
>>> from aivitals.model import Call
>>> call = Call(provider="openai", model="gpt-4o-mini", latency_ms=1.0)
>>> schema = {"type": "object", "required": ["city"], "properties": {"city": {"type": "string"}}}
>>> json_valid(call, CallContent(output_text='{"city": "Paris"}', response_format="json_schema",
...                              json_schema=schema))
1.0
>>> json_valid(call, CallContent(output_text='{"town": "Paris"}', response_format="json_schema",
...                              json_schema=schema))
0.0
>>> json_valid(call, CallContent(tool_calls=(ToolCallContent(name="f", arguments='{"a": 1'),)))
0.0
>>> json_valid(call, CallContent(output_text="Paris.")) is None
True
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING, Any

from aivitals.content import CallContent
from aivitals.model import Call
from aivitals.quality.evaluators.basic import answered

if TYPE_CHECKING:
    import jsonschema_rs

_CACHED_SCHEMAS = 256


def json_valid(call: Call, content: CallContent) -> float | None:
    """1.0 when every JSON the call was asked for parses and fits its schema; None when the call
    asked for none. A cut answer (finish reason ``length``) is scored too: it is invalid JSON."""
    if not answered(call) or not (content.asked_for_json or content.tool_calls):
        return None
    if content.asked_for_json:
        schema = content.json_schema if content.response_format == "json_schema" else None
        if not _fits(content.output_text or "", _inner_schema(schema)):
            return 0.0
    for tool in content.tool_calls:
        if not _fits(tool.arguments or "{}", content.tools_schema.get(tool.name)):
            return 0.0
    return 1.0


def _inner_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    # OpenAI's response_format carries {"name": ..., "schema": {...}, "strict": ...}; sources may
    # hand either that wrapper or the schema itself.
    if schema is not None and isinstance(schema.get("schema"), dict) and "name" in schema:
        inner: dict[str, Any] = schema["schema"]
        return inner
    return schema


def _fits(text: str, schema: dict[str, Any] | None) -> bool:
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if schema is None:
        return True
    validator = _validator(json.dumps(schema, sort_keys=True))
    return validator is None or bool(validator.is_valid(value))


@functools.lru_cache(maxsize=_CACHED_SCHEMAS)
def _validator(schema_json: str) -> jsonschema_rs.Validator | None:
    # jsonschema-rs (Rust): about 20x faster than the pure-Python jsonschema on the same draft
    # 2020-12 rules; imported on first use, on the quality worker. A schema it cannot compile
    # (the request's own mistake, or a remote $ref: offline, nothing is fetched) gives no
    # verdict rather than calling every answer invalid.
    import jsonschema_rs  # noqa: PLC0415

    try:
        return jsonschema_rs.validator_for(json.loads(schema_json), offline=True)
    except (ValueError, jsonschema_rs.ValidationError):
        return None
