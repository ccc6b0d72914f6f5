"""What ships: the final record of every (run, item), and the one stream every export, page and
figure reads. See `record` (the record and how it is composed), `stream` (reading it from the
stores in batches) and `labels` (one label identity)."""

from critic.ship.labels import LabelSet, label_set, same_label
from critic.ship.record import (
    SHIPPED,
    STATUSES,
    FinalRecord,
    OrderVerdict,
    Status,
    compose,
    origin_of,
    parse_origin,
    settle_outcomes,
)
from critic.ship.stream import final_records

__all__ = [
    "SHIPPED",
    "STATUSES",
    "FinalRecord",
    "LabelSet",
    "OrderVerdict",
    "Status",
    "compose",
    "final_records",
    "label_set",
    "origin_of",
    "parse_origin",
    "same_label",
    "settle_outcomes",
]
