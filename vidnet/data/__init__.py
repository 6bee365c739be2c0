"""Data: the frames.db store, conversion, sampling, transforms and datasets."""
