"""Unit tests of sweep.core."""
