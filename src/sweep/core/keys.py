"""Dotted keys of nested configs (`model.depth`): how params, search spaces and diffs name them.

No sweep imports, so config.py and search.py can both use it without an import cycle.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


def leaves(cfg: DictConfig | dict, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> value of every leaf of a nested config (an empty mapping is dropped)."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
