"""Unit tests of sweep.config: checks, the search space, fuzzed input."""
