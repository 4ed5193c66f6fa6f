"""Benchmarks behind `stepgraph bench` (light imports at module level)."""
