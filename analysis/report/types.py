"""The report's frozen records: what a study's labels say, per setting, class, model and annotator.

A measure that is undefined on the data (no pair of labels, no majority, ...)
has the value None and, where a reader needs it, the reason in words; its
interval is then (NaN, NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from analysis.statistics import Interval, PsychometricFit
from analysis.statistics._types import FloatArray, IntArray
from attacks.models import AttackSetting, ClassifierModel


def _share(successes: int, trials: int) -> float | None:
    return successes / trials if trials else None


@dataclass(frozen=True)
class Share:
    """successes of trials with the Wilson 95% interval (Wilson 1927)."""

    successes: int
    trials: int
    interval: Interval

    @property
    def value(self) -> float | None:
        return _share(self.successes, self.trials)


@dataclass(frozen=True)
class Coefficient:
    """A chance-corrected coefficient (kappa, alpha) with a bootstrap interval over examples."""

    value: float | None
    interval: Interval
    reason: str | None = None  # why it is undefined, when value is None


@dataclass(frozen=True)
class Agreement:
    """A model's agreement with the human majority: hits of judged examples, two intervals.

    ``by_examples`` resamples examples within each setting; ``by_participants``
    resamples participants with all of their labels (a cluster bootstrap).
    """

    hits: int
    judged: int
    by_examples: Interval
    by_participants: Interval

    @property
    def value(self) -> float | None:
        return _share(self.hits, self.judged)


@dataclass(frozen=True)
class ModelRow:
    """One model on one group of examples (a setting, a source class, or the whole study)."""

    model: ClassifierModel
    agreement: Agreement
    error_consistency: Coefficient  # Geirhos et al. 2020, against the source label


@dataclass(frozen=True)
class Counts:
    labels: int
    examples: int
    examples_labelled: int
    participants: int


@dataclass(frozen=True)
class Majorities:
    """Examples by majority outcome; ties and unlabelled examples have no majority."""

    with_majority: int
    ties: int
    unlabelled: int
    cant_tell: int  # examples whose majority is "none / can't tell"


@dataclass(frozen=True)
class ResponseTimes:
    """Per label, in milliseconds; None without a timed label."""

    count: int
    median: float | None
    lower_quartile: float | None
    upper_quartile: float | None
    share_below: float | None  # below the study's min_response_ms


@dataclass(frozen=True)
class GroupReport:
    """The measures of one group of examples: a setting or a (setting, source class)."""

    setting: AttackSetting
    source_class: int | None  # None for the whole setting
    counts: Counts
    distribution: tuple[int, ...]  # labels per category, "can't tell" last
    majorities: Majorities
    changed: Share  # majority differs from the source label (of examples with a majority)
    target_reached: Share  # majority equals the target (of those with a majority and a target)
    # The most that any classifier robust on these balls can score against human labels.
    robust_accuracy_upper_bound: Share
    changed_dawid_skene: Share  # as ``changed``, with the Dawid-Skene label instead
    fleiss_kappa: Coefficient
    krippendorff_alpha: Coefficient
    models: tuple[ModelRow, ...]
    # Per setting only (None for a source class); as the exclusion rule measures
    # them: in the browser from the image's onset, else on the server.
    response_times: ResponseTimes | None

    @property
    def robust_accuracy(self) -> ModelRow | None:
        """The setting's target model against human labels (Tramèr et al. 2020, sec. 5)."""
        target_id = self.setting.target_model_id
        return next((row for row in self.models if row.model.pk == target_id), None)


@dataclass(frozen=True)
class SettingReport:
    summary: GroupReport
    classes: tuple[GroupReport, ...]

    @property
    def setting(self) -> AttackSetting:
        return self.summary.setting


@dataclass(frozen=True)
class AnnotatorRow:
    """One participant, pseudonymised; quality is Dawid-Skene's expected accuracy."""

    participant_id: int
    pseudonym: str
    labels: int
    excluded: bool
    quality: float | None
    agreement_with_majority: Share  # their labels on examples with a majority


@dataclass(frozen=True, eq=False)
class DawidSkeneSummary:
    """The Dawid-Skene fit over every analysed label of the study (Dawid & Skene 1979)."""

    iterations: int
    priors: tuple[float, ...]  # per category, "can't tell" last
    example_ids: IntArray = field(repr=False)  # (I,)
    posteriors: FloatArray = field(repr=False)  # (I, K), NaN rows for unlabelled examples

    def posterior(self, example_id: int) -> tuple[float, ...] | None:
        """P(true category | labels) of one example, None without labels."""
        found = np.flatnonzero(self.example_ids == example_id)
        if not found.size or np.isnan(self.posteriors[found[0]]).any():
            return None
        return tuple(float(p) for p in self.posteriors[found[0]])


@dataclass(frozen=True)
class PsychometricPoint:
    setting: AttackSetting
    eps: float
    changed: Share  # labels that differ from the source label, of all labels


@dataclass(frozen=True)
class PsychometricFamily:
    """Settings that differ only in epsilon, with the fitted logistic change rate."""

    title: str
    points: tuple[PsychometricPoint, ...]  # by eps
    fit: PsychometricFit | None
    reason: str | None = None  # why there is no fit

    def curve(self, eps: float) -> float | None:
        if self.fit is None:
            return None
        return 1 / (1 + math.exp(-(self.fit.intercept + self.fit.slope * eps)))


@dataclass(frozen=True)
class BootstrapPlan:
    """How many replicates each bootstrap drew, and why fewer than asked where so."""

    requested: int
    examples: int
    participants: int
    seed: int
    note: str | None = None


@dataclass(frozen=True)
class StudyReport:
    study_id: int
    include_excluded: bool
    categories: tuple[str, ...]  # names of the label categories, "can't tell" last
    settings: tuple[SettingReport, ...]
    models: tuple[ModelRow, ...]  # each model over all of the study's examples
    annotators: tuple[AnnotatorRow, ...]
    dawid_skene: DawidSkeneSummary
    families: tuple[PsychometricFamily, ...]
    bootstrap: BootstrapPlan
    min_response_ms: int
    # Timed studies: the tolerance asked for, and the trials it left out.
    exposure_within_ms: int | None = None
    exposure_missed: int = 0
