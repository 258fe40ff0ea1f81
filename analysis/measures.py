"""Pure functions over labels: majority vote and agreement. No Django here.

Majority vote is written by hand because it is a few lines and must record
ties explicitly (a tie has no majority label and is left out of the shares).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping


def majority_label(votes: Iterable[int]) -> int | None:
    """The single most frequent label, or None for no votes or a tie."""
    ranked = Counter(votes).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return None
    return ranked[0][0]


def share(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def agreement(predictions: Mapping[int, int], majorities: Mapping[int, int]) -> float | None:
    """Share of examples with a human majority on which the prediction equals it."""
    judged = [key for key in majorities if key in predictions]
    agreeing = sum(predictions[key] == majorities[key] for key in judged)
    return share(agreeing, len(judged))
