"""Engines that start, replace and stop workers: the worker protocol is unchanged, each engine
task runs the same worker as `python -m sweep worker` (docs/distributed.md)."""

from sweep.launch.ray_workers import launch

__all__ = ["launch"]
