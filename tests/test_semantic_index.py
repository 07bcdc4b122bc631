"""The semantic cache's parts: the bounded vector index, what a request's question is, the
words-level checks, the config and the missing extra."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from aivitals.config import ConfigError
from aivitals.gateway.config import parse_gateway_config
from aivitals.gateway.embedding import WordLlamaEmbedder
from aivitals.gateway.semantic_cache import SemanticCache, split_question
from aivitals.gateway.semantic_guards import same_meaning_possible
from aivitals.gateway.vector_index import VectorIndex


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_the_index_holds_at_most_max_entries_and_the_oldest_go_first() -> None:
    index: VectorIndex[str] = VectorIndex(dim=2, max_entries=3, ttl_s=60, clock=Clock())
    for name in "abcd":
        index.add("p", unit(1, 0), name)
    assert len(index) == 3
    assert sorted(m.value for m in index.search("p", unit(1, 0), 0.5)) == ["b", "c", "d"]


def test_an_entry_expires_after_ttl_and_a_hit_does_not_make_it_younger() -> None:
    clock = Clock()
    index: VectorIndex[str] = VectorIndex(dim=2, max_entries=10, ttl_s=60, clock=clock)
    index.add("p", unit(1, 0), "old")
    clock.now = 30
    assert [m.value for m in index.search("p", unit(1, 0), 0.5)] == ["old"]
    index.add("p", unit(1, 0.1), "young")
    clock.now = 60
    assert [m.value for m in index.search("p", unit(1, 0), 0.5)] == ["young"]
    assert len(index) == 1  # swept, not only hidden


def test_a_search_sees_only_its_partition_and_ranks_by_similarity() -> None:
    index: VectorIndex[str] = VectorIndex(dim=2, max_entries=10, ttl_s=60, clock=Clock())
    index.add("team-a", unit(1, 0), "exact")
    index.add("team-a", unit(1, 1), "diagonal")
    index.add("team-b", unit(1, 0), "other tenant")
    found = index.search("team-a", unit(1, 0.01), 0.6)
    assert [m.value for m in found] == ["exact", "diagonal"]
    assert found[0].similarity == pytest.approx(1.0, abs=1e-3)
    assert found[1].similarity == pytest.approx(float(unit(1, 1) @ unit(1, 0.01)), abs=1e-6)
    assert index.search("team-c", unit(1, 0), 0.0) == []


def test_removing_from_the_middle_of_a_partition_keeps_every_other_entry_findable() -> None:
    index: VectorIndex[int] = VectorIndex(dim=2, max_entries=100, ttl_s=60, clock=Clock())
    for n in range(10):
        index.add("p", unit(1, n), n)
    index.discard("p", 3)
    index.add("p", unit(1, 5), 5)  # the same value again replaces it
    assert len(index) == 9 and index.count("p") == 9
    for n in set(range(10)) - {3}:
        best = index.search("p", unit(1, n), 0.0)[0]
        assert best.value == n


def test_a_growing_partition_keeps_its_vectors() -> None:
    index: VectorIndex[int] = VectorIndex(dim=8, max_entries=1000, ttl_s=60, clock=Clock())
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for n, vector in enumerate(vectors):
        index.add("p", vector, n)
    for n in (0, 150, 299):
        assert index.search("p", vectors[n], 0.999)[0].value == n


CHAT: dict[str, Any] = {
    "model": "m",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who wrote Hamlet?"},
    ],
}


def test_the_question_is_the_last_user_message_and_the_rest_is_kept_whole() -> None:
    split = split_question("chat", CHAT)
    assert split is not None
    text, rest = split
    assert text == "Who wrote Hamlet?"
    assert rest["messages"][0] == CHAT["messages"][0]
    assert CHAT["messages"][1]["content"] == "Who wrote Hamlet?"  # the request is not touched
    parts = {"role": "user", "content": [{"type": "text", "text": "Who wrote Hamlet?"}]}
    split_parts = split_question("chat", {"messages": [parts]})
    assert split_parts is not None and split_parts[0] == "Who wrote Hamlet?"
    assert parts["content"] == [{"type": "text", "text": "Who wrote Hamlet?"}]  # untouched
    assert split_question("responses", {"input": "Who wrote Hamlet?"}) is not None
    items = {"input": [{"role": "user", "content": [{"type": "input_text", "text": "Who?"}]}]}
    split_items = split_question("responses", items)
    assert split_items is not None and split_items[0] == "Who?"


@pytest.mark.parametrize(
    "last",
    [
        {"role": "assistant", "content": "Shakespeare"},
        {"role": "tool", "content": "{}", "tool_call_id": "x"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
        {"role": "user", "content": "   "},
        {"role": "user", "content": "why? " * 1000},
    ],
    ids=["assistant", "tool", "image", "blank", "too-long"],
)
def test_a_request_not_ending_in_a_plain_user_question_is_not_matched(last: Any) -> None:
    assert split_question("chat", {"model": "m", "messages": [last]}) is None


def test_a_request_without_the_scopes_value_is_not_matched_unless_the_scope_is_global() -> None:
    embedder = WordLlamaEmbedder()
    team = SemanticCache(embedder=embedder, scope="team")
    assert team.question("chat", CHAT, scope_value=None) is None
    everyone = SemanticCache(embedder=embedder, scope="global")
    assert everyone.question("chat", CHAT, scope_value="") is not None


def test_the_partition_changes_with_anything_but_the_last_question() -> None:
    semantic = SemanticCache(embedder=WordLlamaEmbedder())

    def partition(**changes: Any) -> str:
        asked = semantic.question("chat", {**CHAT, **changes}, scope_value="t")
        assert asked is not None
        return asked.partition

    base = partition()
    other_question = [CHAT["messages"][0], {"role": "user", "content": "Who is Hamlet's author?"}]
    assert partition(messages=other_question) == base
    assert partition(user="someone") == base  # who asks is not part of the answer
    assert partition(model="m2") != base
    assert partition(temperature=1.5) != base
    assert partition(stream=True) != base
    assert partition(tools=[{"type": "function", "function": {"name": "f"}}]) != base
    assert partition(response_format={"type": "json_object"}) != base
    other_system = [{"role": "system", "content": "Be long."}, CHAT["messages"][1]]
    assert partition(messages=other_system) != base
    asked = semantic.question("chat", CHAT, scope_value="another team")
    assert asked is not None and asked.partition != base


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Is it safe?", "Isn't it safe?"),
        ("Is it safe?", "Is it not safe?"),
        ("Convert 10 miles to km", "Convert 12 miles to km"),
        ("Give me three ideas", "Give me five ideas"),
        ("From Paris to Rome", "From Rome to Paris"),
        ("How do I lock my account?", "How do I unlock my account?"),
        ("How do I turn on dark mode?", "How do I turn off dark mode?"),
    ],
)
def test_the_words_level_checks_turn_down_what_embeddings_cannot_tell_apart(a: str, b: str) -> None:
    assert not same_meaning_possible(a, b)
    assert same_meaning_possible(a, a)


def test_semantic_config_is_parsed_and_bad_values_are_refused_by_name() -> None:
    config = parse_gateway_config(
        {"cache": {"semantic": True, "scope": "user", "semantic_threshold": 0.95}}
    )
    cache, routes = config.build_cache()
    assert cache is not None and routes == {"chat"}  # the semantic routes are cached too
    semantic = config.build_semantic_cache()
    assert semantic is not None
    assert (semantic.scope, semantic.threshold) == ("user", 0.95)
    assert semantic.routes == frozenset({"chat"})
    assert parse_gateway_config({"cache": {}}).build_semantic_cache() is None
    with pytest.raises(ConfigError, match="semantic_threshold"):
        parse_gateway_config({"cache": {"semantic": True, "semantic_threshold": 1.5}})
    with pytest.raises(ConfigError, match="scope"):
        parse_gateway_config({"cache": {"semantic": True, "scope": "tenant"}})
    with pytest.raises(ConfigError, match="semantic_routes"):
        parse_gateway_config({"cache": {"semantic": True, "semantic_routes": ["embeddings"]}})


def test_semantic_without_wordllama_installed_is_a_config_error_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    monkeypatch.setitem(sys.modules, "wordllama", None)
    config = parse_gateway_config({"cache": {"semantic": True}})
    with pytest.raises(ConfigError, match=r"aivitals\[semantic\]"):
        config.build_semantic_cache()
