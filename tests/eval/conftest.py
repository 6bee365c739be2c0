"""Fixtures of the evaluation tests: see tests/conftest.py (`tiny_dataset`, `tiny_checkpoint`)."""
