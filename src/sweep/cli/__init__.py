"""The command line: one runner and its command table over the Python API."""
