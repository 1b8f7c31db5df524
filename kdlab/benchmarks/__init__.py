"""Benchmarks behind ``kdlab bench ...`` (not tests: they measure, they do not assert)."""
