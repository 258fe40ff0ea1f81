"""Agreement statistics for human labelling studies: pure numpy/scipy, no Django.

Every measure is vectorised (bincount, sparse products, batched Newton), so that a
study of a million labels is measured in seconds (docs/performance.md). Each is
checked in tests/analysis/test_statistics.py against the field's library
(docs/architecture.md, rule 6): statsmodels, krippendorff, crowd-kit.
"""

from analysis.statistics._types import Interval
from analysis.statistics.agreement import (
    FLEISS_KAPPA,
    KRIPPENDORFF_ALPHA,
    CountStatistic,
    MajorityVotes,
    agreement_with_majority,
    count_matrix,
    error_consistency,
    error_consistency_combine,
    error_consistency_terms,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    majority_share_statistic,
    majority_votes,
    robust_accuracy_upper_bound,
    robust_accuracy_vs_humans,
    share_changed,
    share_target,
)
from analysis.statistics.dawid_skene import DawidSkeneFit, dawid_skene
from analysis.statistics.intervals import (
    agreement_sums,
    bootstrap_examples,
    bootstrap_interval,
    bootstrap_participants,
    error_consistency_interval,
    participant_agreement_sums,
    percentile_intervals,
    recentred_intervals,
    resampled_sums,
    wilson_interval,
)
from analysis.statistics.psychometric import (
    PsychometricFit,
    PsychometricFits,
    fit_psychometric,
    fit_psychometric_curves,
)
from analysis.statistics.response_times import ResponseTimeSummary, response_time_summary

__all__ = [
    "FLEISS_KAPPA",
    "KRIPPENDORFF_ALPHA",
    "CountStatistic",
    "DawidSkeneFit",
    "Interval",
    "MajorityVotes",
    "PsychometricFit",
    "PsychometricFits",
    "ResponseTimeSummary",
    "agreement_sums",
    "agreement_with_majority",
    "bootstrap_examples",
    "bootstrap_interval",
    "bootstrap_participants",
    "count_matrix",
    "dawid_skene",
    "error_consistency",
    "error_consistency_combine",
    "error_consistency_interval",
    "error_consistency_terms",
    "fit_psychometric",
    "fit_psychometric_curves",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "majority_share_statistic",
    "majority_votes",
    "participant_agreement_sums",
    "percentile_intervals",
    "recentred_intervals",
    "resampled_sums",
    "response_time_summary",
    "robust_accuracy_upper_bound",
    "robust_accuracy_vs_humans",
    "share_changed",
    "share_target",
    "wilson_interval",
]
