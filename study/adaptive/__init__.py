"""Adaptive designs' procedures: which eps to show next, and where the threshold lies.

Pure Python and numpy, never Django (docs/architecture.md, "Imports run one way"): the
study app stores a procedure's state as JSON in a row and calls these functions inside
the transaction that stores each answer. Every update is a pure function of
(state, eps shown, outcome), so a state can be rebuilt from the answers alone.
"""

from study.adaptive.levels import NextEps, log_spaced_levels
from study.adaptive.psychometric import change_share, location_for, threshold_for
from study.adaptive.quest import (
    QuestDesign,
    QuestState,
    ThresholdEstimate,
    default_quest_design,
    estimate_threshold,
    fitted_shares,
    next_quest_eps,
    posterior,
    quest_stop_reason,
    replay_quest,
    update_quest,
)
from study.adaptive.staircase import (
    StaircaseDesign,
    StaircaseEstimate,
    StaircaseState,
    estimate_staircase,
    next_staircase_eps,
    replay_staircase,
    staircase_stop_reason,
    start_staircase,
    update_staircase,
)

__all__ = [
    "NextEps",
    "QuestDesign",
    "QuestState",
    "StaircaseDesign",
    "StaircaseEstimate",
    "StaircaseState",
    "ThresholdEstimate",
    "change_share",
    "default_quest_design",
    "estimate_staircase",
    "estimate_threshold",
    "fitted_shares",
    "location_for",
    "log_spaced_levels",
    "next_quest_eps",
    "next_staircase_eps",
    "posterior",
    "quest_stop_reason",
    "replay_quest",
    "replay_staircase",
    "staircase_stop_reason",
    "start_staircase",
    "threshold_for",
    "update_quest",
    "update_staircase",
]
