"""Evaluation: metrics, multi-view testing and reports (filled by the evaluation issue)."""
