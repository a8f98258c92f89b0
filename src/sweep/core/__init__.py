"""What every layer shares: errors and exit codes, masking, the terminal, Ctrl-C,
objects built behind the allowlist, and the launcher of server processes.
"""
