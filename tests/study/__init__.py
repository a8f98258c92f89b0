"""Tests of sweep.study: workers, pruning, budgets, samplers, the registry."""
