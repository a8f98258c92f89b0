"""Tests of sweep.serve: report, ui, server, dashboard."""
