"""Benchmarks (not tests): they report figures, they do not pass or fail."""
