"""Benchmarks: performance and quality measured against baselines run in the same process."""
