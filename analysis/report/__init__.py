"""A study's report: every measure of its labels, per setting, source class, model and annotator.

``study_report`` reads the labels once into numpy arrays (analysis.report.loading)
and computes the measures of analysis.statistics from them; the records it
returns are frozen dataclasses (analysis.report.types).
"""

from analysis.report.build import study_report
from analysis.report.types import (
    Agreement,
    AnnotatorRow,
    BootstrapPlan,
    Coefficient,
    Counts,
    DawidSkeneSummary,
    GroupReport,
    Majorities,
    ModelRow,
    PsychometricFamily,
    PsychometricPoint,
    ResponseTimes,
    SettingReport,
    Share,
    StudyReport,
)

__all__ = [
    "Agreement",
    "AnnotatorRow",
    "BootstrapPlan",
    "Coefficient",
    "Counts",
    "DawidSkeneSummary",
    "GroupReport",
    "Majorities",
    "ModelRow",
    "PsychometricFamily",
    "PsychometricPoint",
    "ResponseTimes",
    "SettingReport",
    "Share",
    "StudyReport",
    "study_report",
]
