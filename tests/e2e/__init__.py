"""End to end, as a user runs it: real services, real faults, a real browser."""
