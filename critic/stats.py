"""Exact binomial tails and Clopper–Pearson bounds: `adjudication.binomial`, which the review
queues share (they never import critic), under the name critic's modules use."""

from adjudication.binomial import (
    betainc,
    binomial_lower_bound,
    binomial_sf,
    binomial_upper_bound,
    clopper_pearson,
    min_labels_to_pass,
    passes,
)

__all__ = [
    "betainc",
    "binomial_lower_bound",
    "binomial_sf",
    "binomial_upper_bound",
    "clopper_pearson",
    "min_labels_to_pass",
    "passes",
]
