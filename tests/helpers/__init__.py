"""Helpers for tests and benchmarks (synthetic inputs and clips); not part of the installed package."""
