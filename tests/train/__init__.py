"""Unit tests of sweep.train: data, the loop, plots."""
