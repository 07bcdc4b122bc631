"""Quality, measured: the stage that hands call contents to the evaluators, judge and capture."""

from aivitals.quality.stage import ContentConsumer, ContentSource, QualityStage, QualityStats

__all__ = ["ContentConsumer", "ContentSource", "QualityStage", "QualityStats"]
