"""Tests of sweep.replay: rerun and robust."""
