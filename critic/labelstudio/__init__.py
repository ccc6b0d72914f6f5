"""Reviewing in Label Studio: critic's items out as pre-labelled tasks, annotations back in as
human decisions. `config` makes the labeling config from a constitution, `tasks` turns final
records into tasks and annotations into answers (both pure), `client` talks to Label Studio's
REST API, and `sync` joins them to the stores (`push`, `pull`, `import_export`). The
`label-studio` export format (`critic.exports.label_studio`) writes the same tasks to a folder.
"""

from critic.labelstudio.client import Client, LabelStudioError
from critic.labelstudio.config import Layout, labeling_config
from critic.labelstudio.sync import BroughtIn, PushResult, import_export, pull, push

__all__ = [
    "BroughtIn",
    "Client",
    "LabelStudioError",
    "Layout",
    "PushResult",
    "import_export",
    "labeling_config",
    "pull",
    "push",
]
