"""The semantic cache: what a lookup adds to a request, at 10,000 and 100,000 cached questions.

A lookup is what the gateway does after the exact cache misses (`SemanticCache.question` and
`SemanticCache.lookup`): split the request and hash its partition, embed the last question
(WordLlama, 64 dimensions), search the partition by brute force, check the words of the best
candidates. Timed for a hit (a paraphrase of a cached question) and for a miss (an unrelated
question), with every cached question in ONE partition (the worst case: one tenant, one system
prompt), and for a miss with the same entries spread over 1,000 partitions. Also the embedding
and the search alone. Median and p99 of ``--runs`` after a warm-up; one core (numpy's BLAS
limited to one thread, as under a busy gateway).

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_semantic.py --entries 10000,100000 \\
        --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from aivitals.gateway.embedding import WordLlamaEmbedder
from aivitals.gateway.semantic_cache import Pending, SemanticCache
from aivitals.gateway.semantic_guards import signature
from report import machine_line, write_section

SYSTEM = {"role": "system", "content": "You are the help desk of an online shop."}
VERBS = ("reset", "change", "find", "cancel", "update", "track", "return", "export", "delete")
THINGS = ("password", "order", "invoice", "address", "plan", "parcel", "card", "account")
PLACES = ("on the app", "on the website", "by email", "from my phone", "for my team")
CACHED = "How do I track parcel 4321 on the app?"
PARAPHRASE = "How can I track my parcel 4321 on the app?"
UNRELATED = "Why is the sky blue at noon?"


def question_text(n: int) -> str:
    verb, thing = VERBS[n % len(VERBS)], THINGS[(n // len(VERBS)) % len(THINGS)]
    place = PLACES[(n // (len(VERBS) * len(THINGS))) % len(PLACES)]
    return f"How do I {verb} {thing} {n} {place}?"  # the figure makes each question distinct


def body(text: str) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [SYSTEM, {"role": "user", "content": text}]}


def filled(entries: int, partitions: int) -> SemanticCache:
    semantic = SemanticCache(embedder=WordLlamaEmbedder(), max_entries=entries + 1, ttl_s=1e9)
    teams = [f"team-{n}" for n in range(partitions)]
    for n in range(entries):
        text = CACHED if n == 0 else question_text(n)
        asked = semantic.question("chat", body(text), scope_value=teams[n % partitions])
        assert asked is not None
        vector = semantic.embedder.embed(text)
        assert vector is not None
        semantic.add(Pending(asked.partition, vector, signature(text)), f"key-{n}")
    return semantic


def timed_us(step: Callable[[], object], runs: int) -> tuple[float, float]:
    for _ in range(20):
        step()
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        step()
        samples.append((time.perf_counter() - began) * 1e6)
    return statistics.median(samples), float(np.percentile(samples, 99))


def lookup(semantic: SemanticCache, text: str, expect_hit: bool) -> Callable[[], object]:
    def step() -> object:
        asked = semantic.question("chat", body(text), scope_value="team-0")
        assert asked is not None
        found = semantic.lookup(asked)
        assert (found.match is not None) == expect_hit
        return found

    return step


def measure(entries: int, runs: int) -> list[tuple[str, float, float]]:
    rows = []
    one = filled(entries, 1)
    rows.append(
        (f"hit, {entries:,} in one partition", *timed_us(lookup(one, PARAPHRASE, True), runs))
    )
    rows.append(
        (f"miss, {entries:,} in one partition", *timed_us(lookup(one, UNRELATED, False), runs))
    )
    asked = one.question("chat", body(UNRELATED), scope_value="team-0")
    assert asked is not None
    vector = one.embedder.embed(UNRELATED)
    assert vector is not None
    rows.append(
        (
            f"search alone, {entries:,} in one partition",
            *timed_us(lambda: one.index.search(asked.partition, vector, one.threshold), runs),
        )
    )
    spread = filled(entries, 1000)
    rows.append(
        (
            f"miss, {entries:,} over 1,000 partitions",
            *timed_us(lookup(spread, UNRELATED, False), runs),
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", default="10000,100000")
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    embedder = WordLlamaEmbedder()
    rows = [
        ("embedding alone (one question)", *timed_us(lambda: embedder.embed(PARAPHRASE), args.runs))
    ]
    for entries in (int(n) for n in args.entries.split(",")):
        rows.extend(measure(entries, args.runs))
    lines = [
        "| semantic lookup | median µs | p99 µs |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {median:,.0f} | {p99:,.0f} |" for name, median, p99 in rows),
        "",
        f"Machine: {machine_line()}.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(args.write, "semantic", table)


if __name__ == "__main__":
    main()
