"""critic: model-assisted labeling and constitutional-AI feedback."""

from __future__ import annotations

__version__ = "0.1.0"
