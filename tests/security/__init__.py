"""The attacker's tests (docs/security.md names each)."""
