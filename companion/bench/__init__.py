"""Benchmarks (``companion bench``): figures, not pass/fail timing tests."""
