"""Review queues, their stores, agreement metrics and the review web app. Never imports critic.

store = open_store("sqlite:///queue.db")      # or postgresql+psycopg://user@host/db
store.create_queue("harm", overlap=2, labels=["safe", "unsafe"])
store.add_user("alice")                       # role: reviewer, adjudicator or admin
store.enqueue("harm", [NewTask(item_id="42", item={...}, draft_label="safe", confidence=0.4)])
claim = store.claim("harm", "alice")          # None when nothing is left for alice
store.decide(claim.token, "edit", label="unsafe", note="threat in line 2")
store.outcomes("harm"); store.stats("harm"); store.agreement("harm"); store.history(...)
"""

from .errors import (
    AdjudicationError,
    AgreementError,
    LeaseError,
    NotFoundError,
    PermissionDenied,
    QueueError,
    StoreError,
)
from .models import (
    ACTIONS,
    REJECTED,
    ROLES,
    Action,
    Claim,
    ClaimKind,
    Decision,
    EnqueueResult,
    Event,
    NewTask,
    Outcome,
    Queue,
    QueueStats,
    Role,
    Source,
    Task,
    TaskState,
    User,
)
from .store import Clock, Store, open_store, utc_now

__all__ = [
    "ACTIONS",
    "REJECTED",
    "ROLES",
    "Action",
    "AdjudicationError",
    "AgreementError",
    "Claim",
    "ClaimKind",
    "Clock",
    "Decision",
    "EnqueueResult",
    "Event",
    "LeaseError",
    "NewTask",
    "NotFoundError",
    "Outcome",
    "PermissionDenied",
    "Queue",
    "QueueError",
    "QueueStats",
    "Role",
    "Source",
    "Store",
    "StoreError",
    "Task",
    "TaskState",
    "User",
    "open_store",
    "utc_now",
]
