"""`label-studio`: a folder with `tasks.json` (Label Studio's JSON tasks, the critic's verdict as
a prediction) and `config.xml` (the labeling config made from the constitution), to import into
a Label Studio project. Its purpose is review, so by default it holds the items routed to review
and not yet decided; `--all` holds every item, its status in `data.critic_status`. The shapes
are `critic.labelstudio`'s (`config`, `tasks`); `critic ls push` sends the same to a server."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from critic.exports.files import replacing
from critic.exports.registry import ExportFormat, Tally, Writer
from critic.labelstudio.config import labeling_config
from critic.labelstudio.sync import layout_for
from critic.labelstudio.tasks import to_task
from critic.ship import FinalRecord
from critic.store import RunInfo, Store

TASKS, CONFIG = "tasks.json", "config.xml"


def prepare(store: Store, runs: Sequence[RunInfo]) -> Writer:
    layout = layout_for(store, runs)

    def write(records: Iterable[FinalRecord], out: Path, tally: Tally) -> int:
        count = 0
        with replacing(out, directory=True, marker=TASKS, kind="label-studio") as temp:
            temp.mkdir()
            (temp / CONFIG).write_text(labeling_config(layout), encoding="utf-8")
            with (temp / TASKS).open("w", encoding="utf-8") as handle:
                handle.write("[")
                for record in records:
                    handle.write(",\n" if count else "\n")
                    handle.write(json.dumps(to_task(record, layout), ensure_ascii=False))
                    count += 1
                handle.write("\n]\n")
        return count

    return write


FORMAT = ExportFormat(
    "label-studio",
    "a folder for Label Studio: tasks.json with the critic's predictions, config.xml (items "
    "awaiting review)",
    prepare=prepare,
    noun="Label Studio tasks",
    directory=True,
    review_only=True,
)
