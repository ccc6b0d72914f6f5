"""critic: model-assisted labeling and constitutional-AI feedback.

    from critic import label, load_constitution, open_store, get_backend
    store = open_store("sqlite:///critic.db")
    backend = get_backend("vllm-server", base_url="http://127.0.0.1:8000/v1", model="...")
    summary = label("items.jsonl", load_constitution("harmlessness"), backend, store)

Names resolve on first use, so `import critic` loads no vllm, torch or transformers (and not even
the database layer until it is needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run": "critic.tasks",
    "label": "critic.tasks.label",
    "alabel": "critic.tasks.label",
    "LabelOptions": "critic.tasks.label",
    "revise": "critic.tasks.revise",
    "compare": "critic.tasks.compare",
    "ReviseOptions": "critic.tasks.revise",
    "CompareOptions": "critic.tasks.compare",
    "RunSummary": "critic.runs",
    "Sampling": "critic.config",
    "InputSpec": "critic.config",
    "RunControl": "critic.config",
    "BackendSpec": "critic.config",
    "load_constitution": "critic.constitution",
    "Constitution": "critic.constitution",
    "load_items": "critic.items",
    "Item": "critic.items",
    "Fields": "critic.items",
    "get_backend": "critic.backends",
    "Request": "critic.backends",
    "Generation": "critic.backends",
    "open_store": "critic.store",
    "export": "critic.exports",
    "final_records": "critic.ship",
    "FinalRecord": "critic.ship",
    "calibrate": "critic.calibrate",
    "Policy": "critic.routing",
    "load_policy": "critic.routing",
    "route": "critic.routing",
    "CriticError": "critic.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'critic' has no attribute {name!r}")
