"""Per-child memory: a SQLite store (crash-safe, erasable), fact extraction, and prompt recall."""
