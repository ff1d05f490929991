"""Benchmarks run by hand (see README.md); not part of the test suite."""
