"""A past run trained again from its record alone: `rerun` and `robust`."""
