"""vidnet: video action recognition with a fast SQLite frame store."""

__version__ = "0.1.0"
