"""Detectors over text: personal data, secrets, refusals, and the redaction that masks them.

Shared by the ``pii_leak`` and ``refusal`` evaluators, content capture's redaction and, later,
the gateway's guardrails. Offline, deterministic, no model.
"""

from aivitals.detectors.finding import KINDS, Finding, Kind
from aivitals.detectors.pii import find_pii
from aivitals.detectors.redact import redact
from aivitals.detectors.refusal import is_refusal

__all__ = ["KINDS", "Finding", "Kind", "find_pii", "is_refusal", "redact"]
