"""Secret-looking tokens: the API keys of the major providers, private keys, JWTs.

Hand-written from each issuer's documented key format: the maintained scanners (detect-secrets,
trufflehog, gitleaks) are file- and repository-oriented frameworks, far heavier than a dozen
patterns run over one answer. A key must also look random (letters and digits, varied), so the
placeholders of documentation (``sk-your-key-here``, ``AKIAXXXXXXXXXXXXXXXX``) are not findings.

>>> [(f.kind, f.detail) for f in find_secrets("key: sk-proj-4fG7hK2mN9pQ1rS8tV3wX6yZ0aB5cD")]
[('secret', 'openai')]
>>> find_secrets("export OPENAI_API_KEY=sk-your-key-here")
[]
"""

from __future__ import annotations

import re

from aivitals.detectors.finding import Finding

# Ordered: a more specific pattern first (sk-ant- before sk-), the first match of a span wins.
_PATTERNS: tuple[tuple[str, str, re.Pattern[str], bool], ...] = tuple(
    (issuer, literal, re.compile(pattern), random)
    for issuer, literal, pattern, random in (
        (
            "private_key",
            "PRIVATE KEY",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
            # An answer cut by its length limit may end inside the key: to the end is the key.
            r"[\s\S]*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\Z)",
            False,
        ),
        (
            "anthropic",
            "sk-ant-",
            r"(?<![\w-])sk-ant-(?:api|admin|oat)\d{2}-[A-Za-z0-9_-]{20,}",
            True,
        ),
        ("openai", "sk-", r"(?<![\w-])sk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}", True),
        ("aws", "A", r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}(?![A-Za-z0-9])", True),
        ("github", "_", r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])", True),
        ("github", "github_pat_", r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{22,255}", True),
        ("google", "AIza", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])", True),
        ("slack", "xox", r"(?<![A-Za-z0-9-])xox[bpaors]-[A-Za-z0-9-]{10,}", True),
        ("stripe", "_live_", r"(?<![A-Za-z0-9_])(?:sk|rk)_live_[A-Za-z0-9]{16,}", True),
        (
            "jwt",
            "eyJ",
            # Header and payload are base64url JSON objects: both start with eyJ ('{"').
            r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{16,}",
            True,
        ),
    )
)
_PREFIX = re.compile(
    r"^(?:sk-ant-\w+?\d{2}-|sk-(?:proj-|svcacct-|admin-|None-)?|[a-z]+_(?:live_|pat_)?|[A-Z]{4})"
)


def find_secrets(text: str) -> list[Finding]:
    """The secret-looking tokens in ``text``, in order, none overlapping."""
    found: list[Finding] = []
    taken: list[tuple[int, int]] = []
    for issuer, literal, pattern, random in _PATTERNS:
        if literal not in text:  # a substring test is ~100x cheaper than the pattern's scan
            continue
        for match in pattern.finditer(text):
            start, end = match.span()
            if random and not _looks_random(_PREFIX.sub("", match.group(), count=1)):
                continue
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            found.append(Finding("secret", start, end, issuer))
    found.sort(key=lambda f: f.start)
    return found


def _looks_random(body: str) -> bool:
    # Real keys mix letters and digits over many distinct characters; placeholders do not.
    return (
        any(c.isdigit() for c in body)
        and any(c.isalpha() for c in body)
        and len(set(body)) >= min(10, len(body) // 2)
    )
