"""The cap itself: which label sets a `KeyCap` keeps, how it folds, and what it counts."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aivitals.cardinality import OTHER, KeyCap, LabelLimits, OverflowCollector, ValueCap


def test_a_full_cap_folds_into_a_label_set_it_already_keeps() -> None:
    cap = KeyCap(
        "demo_total",
        ("provider", "model", "team"),
        max_keys=3,
        values={"model": ValueCap(100), "team": ValueCap(100)},
    )
    assert cap.admit(("openai", "a", "core")) == ("openai", "a", "core")
    assert cap.admit(("openai", "a", OTHER)) == ("openai", "a", OTHER)
    assert cap.admit(("openai", "b", "core")) == ("openai", "b", "core")
    # Full: the team folds first, into a set already kept.
    assert cap.admit(("openai", "a", "growth")) == ("openai", "a", OTHER)
    # Nothing kept for (b, _other): the model folds too, into the one set admitted past the cap.
    assert cap.admit(("openai", "b", "growth")) == ("openai", OTHER, OTHER)
    assert cap.admit(("openai", "c", "x")) == ("openai", OTHER, OTHER)
    assert cap.size == 4
    assert cap.folds == {"model": 2, "team": 3}


def test_a_value_past_its_label_cap_folds_even_with_room_for_sets() -> None:
    cap = KeyCap("demo_total", ("model",), max_keys=100, values={"model": ValueCap(2)})
    assert [cap.admit((m,))[0] for m in ("a", "b", "c", "b", "d")] == ["a", "b", OTHER, "b", OTHER]


def test_count_false_folds_alike_and_counts_nothing() -> None:
    cap = KeyCap("demo", ("model",), max_keys=10, values={"model": ValueCap(1)})
    cap.admit(("a",))
    assert cap.admit(("b",)) == (OTHER,)
    assert cap.admit(("b",), count=False) == (OTHER,)
    assert cap.folds == {"model": 1}


def test_value_caps_shared_by_two_families_fold_the_same_values() -> None:
    models = ValueCap(1)
    one = KeyCap("one", ("model",), max_keys=10, values={"model": models})
    two = KeyCap("two", ("model", "feature"), max_keys=10, values={"model": models})
    assert one.admit(("a",)) == ("a",)
    assert two.admit(("b", "x")) == (OTHER, "x")
    assert two.admit(("a", "x")) == ("a", "x")


def test_concurrent_admissions_never_pass_the_caps() -> None:
    cap = KeyCap("demo", ("model", "team"), max_keys=50, values={"model": ValueCap(20)})
    barrier = threading.Barrier(8)

    def admit_many(worker: int) -> None:
        barrier.wait()
        for i in range(2_000):
            cap.admit((f"m-{worker}-{i}", f"t-{i % 7}"))

    threads = [threading.Thread(target=admit_many, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = [
        cap.admit((f"m-{w}-{i}", f"t-{i % 7}"), count=False)[0]
        for w in range(8)
        for i in range(2_000)
    ]
    own = [model for model in kept if model != OTHER]
    assert 0 < len(own) <= 20
    assert cap.size <= 50 + 7  # plus one (OTHER, team) set per team, which never folds
    # Every model was sent once, so every admission but the kept ones was one fold.
    assert cap.folds["model"] == 8 * 2_000 - len(own)


def test_overflow_collector_shows_every_foldable_label_at_zero() -> None:
    cap = KeyCap("demo_total", ("provider", "model"), max_keys=5, values={"model": ValueCap(5)})
    (family,) = OverflowCollector([cap]).collect()
    assert family.name == "aivitals_label_overflow"
    assert [(s.labels, s.value) for s in family.samples] == [
        ({"metric": "demo_total", "label": "model"}, 0)
    ]


@pytest.mark.parametrize("field", ["models", "live_keys"])
@pytest.mark.parametrize("bad", [0, -1, True, 2.5])
def test_limits_must_be_whole_and_positive(field: str, bad: object) -> None:
    with pytest.raises(ValueError, match=field):
        LabelLimits(**{field: bad})  # type: ignore[arg-type]  # the point is a wrong type


keys = st.lists(
    st.tuples(st.sampled_from("pq"), st.text("abcdefgh", max_size=2), st.text("xyz", max_size=2)),
    max_size=300,
)


@given(keys, st.integers(1, 20), st.integers(1, 6))
def test_any_stream_of_label_sets_stays_within_the_bound(
    stream: list[tuple[str, str, str]], max_keys: int, max_models: int
) -> None:
    cap = KeyCap(
        "demo",
        ("provider", "model", "team"),
        max_keys=max_keys,
        values={"model": ValueCap(max_models), "team": ValueCap(50)},
        fold_order=("team", "model"),
    )
    own: set[tuple[str, str, str]] = set()
    for key in stream:
        got = cap.admit(key)
        # Only folds to OTHER; the provider never folds.
        assert all(g in (k, OTHER) for g, k in zip(got, key, strict=True)) and got[0] == key[0]
        # A key once kept as itself stays itself: its series never jumps to _other.
        if key in own:
            assert got == key
        if got == key:
            own.add(key)
    kept = {cap.admit(key, count=False) for key in stream}
    assert len(kept) <= cap.size <= max_keys + 2  # plus one all-folded set per provider
    assert len({key[1] for key in kept} - {OTHER}) <= max_models
