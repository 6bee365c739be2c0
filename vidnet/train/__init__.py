"""Training engine (filled by the training issue)."""
