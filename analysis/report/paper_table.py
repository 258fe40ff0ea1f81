"""The per-setting table a paper prints, as Markdown and as LaTeX (booktabs), from a report.

Pure: it reads a ``StudyReport`` that is already built and a ``Provenance`` the caller
fills in (the study's title, the time, the code version), and returns strings; it
computes no statistic and runs no query, so the table's numbers are the report's own,
rounded. One row per analysed setting: the share of examples whose human majority
changed from the source label, the share whose majority is the attack's target, the
upper bound on robust accuracy against human labels, Fleiss' kappa, Krippendorff's
alpha, then each model's agreement with the humans and its error consistency with them
(Cohen's kappa, Geirhos et al. 2020); every measure with its 95% interval, written
"0.42 [0.35, 0.49]".
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from analysis.report.types import Agreement, Coefficient, GroupReport, Share, StudyReport
from analysis.statistics import Interval

DIGITS = 2
FORMATS = {  # name -> (content type, file extension)
    "markdown": ("text/markdown; charset=utf-8", "md"),
    "latex": ("text/x-tex; charset=utf-8", "tex"),
}
NO_LABELS = "No labels yet: every measure is undefined until annotators have answered."
NO_SETTINGS = "No analysed items."
_NORMS = {"linf": ("L∞", r"$\ell_\infty$"), "l2": ("L2", r"$\ell_2$"), "l0": ("L0", r"$\ell_0$")}


class UnknownFormat(ValueError):
    """A format other than those in FORMATS; its message is a sentence for the reader."""

    @classmethod
    def of(cls, name: str) -> UnknownFormat:
        given = f"not {name[:40]!r}" if name else "and none was given"
        return cls(f"The paper table's format is {' or '.join(FORMATS)}, {given}.")


@dataclass(frozen=True)
class Provenance:
    """What the caption says of where the numbers come from; the report does not hold it."""

    study_id: int
    title: str
    labels_per_item: int
    analysed_at: datetime  # aware: the caption writes its time zone
    code_version: str  # attacks.provenance.code_version()


@dataclass(frozen=True)
class _Dialect:
    """How one output language writes text, numbers and the undefined."""

    escape: Callable[[str], str]
    minus: str
    missing: str
    norms: int  # index into _NORMS' pairs
    kappa: str
    alpha: str
    quotes: tuple[str, str]
    # After an abbreviation's period: LaTeX would otherwise set the wider space that ends a
    # sentence.
    abbreviation_space: str


def _escape_markdown(text: str) -> str:
    # A pipe would end the cell; a backslash, asterisk or underscore could start emphasis.
    for special in ("\\", "|", "*", "_", "`"):
        text = text.replace(special, "\\" + special)
    return _one_line(text)


def _one_line(text: str) -> str:
    """Runs of white space (a newline in a title would end a table's row) as one space."""
    return re.sub(r"\s+", " ", text)


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def escape_latex(text: str) -> str:
    """``text`` as LaTeX prints it: every character that LaTeX reads as markup escaped."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in _one_line(text))


KAPPA, ALPHA = "\u03ba", "\u03b1"
MARKDOWN = _Dialect(_escape_markdown, "-", "—", 0, KAPPA, ALPHA, ("“", "”"), " ")
# Greek letters as math: pdflatex's utf8 input has no Greek without extra fonts.
LATEX = _Dialect(escape_latex, "$-$", "---", 1, r"$\kappa$", r"$\alpha$", ("``", "''"), r"\ ")


def _number(value: float, dialect: _Dialect) -> str:
    text = f"{value:.{DIGITS}f}"
    if text.startswith("-") and text.strip("-0."):
        return dialect.minus + text[1:]
    return text.lstrip("-")  # "-0.00" is a tiny negative, rounded: write it as 0


def _measure(value: float | None, interval: Interval, dialect: _Dialect) -> str:
    """0.42 [0.35, 0.49]; the value alone where the interval is undefined; a dash for none."""
    if value is None or math.isnan(value):
        return dialect.missing
    text = _number(value, dialect)
    if math.isnan(interval.low) or math.isnan(interval.high):
        return text
    return f"{text} [{_number(interval.low, dialect)}, {_number(interval.high, dialect)}]"


def _share(share: Share, dialect: _Dialect) -> str:
    return _measure(share.value, share.interval, dialect)


def _coefficient(coefficient: Coefficient, dialect: _Dialect) -> str:
    return _measure(coefficient.value, coefficient.interval, dialect)


def _agreement(agreement: Agreement, dialect: _Dialect) -> str:
    return _measure(agreement.value, agreement.by_examples, dialect)


def _budget(row: GroupReport, dialect: _Dialect) -> str:
    setting = row.setting
    if setting.norm is None or setting.eps is None:
        return dialect.missing
    norm = _NORMS.get(setting.norm, (setting.norm, setting.norm))[dialect.norms]
    return f"{norm} {setting.eps:g}"


def model_names(report: StudyReport) -> list[str]:
    return [row.model.name for row in report.models]


def _cells(row: GroupReport, dialect: _Dialect) -> list[str]:
    return [
        dialect.escape(row.setting.name),
        dialect.escape(row.setting.kind),
        _budget(row, dialect),
        str(row.counts.examples),
        str(row.counts.labels),
        _share(row.changed, dialect),
        _share(row.target_reached, dialect),
        _share(row.robust_accuracy_upper_bound, dialect),
        _coefficient(row.fleiss_kappa, dialect),
        _coefficient(row.krippendorff_alpha, dialect),
        *(_agreement(model.agreement, dialect) for model in row.models),
        *(_coefficient(model.error_consistency, dialect) for model in row.models),
    ]


def _header(report: StudyReport, dialect: _Dialect) -> list[str]:
    """The columns' names, in the order ``_cells`` writes a row: each model's name escaped,
    the symbols and spacing the dialect's own."""
    names = [dialect.escape(name) for name in model_names(report)]
    return [
        "Setting",
        "Kind",
        "Budget",
        "Examples",
        "Labels",
        "Changed",
        "Target",
        f"Robust acc.{dialect.abbreviation_space}bound",
        f"{dialect.kappa} (Fleiss)",
        f"{dialect.alpha} (Krippendorff)",
        *(f"Agreement {name}" for name in names),
        *(f"Error consistency {name}" for name in names),
    ]


def _total_labels(report: StudyReport) -> int:
    return sum(entry.summary.counts.labels for entry in report.settings)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def caption(report: StudyReport, provenance: Provenance, dialect: _Dialect) -> str:
    """The provenance in one line: study, participants, labels, k, time, code, models;
    then what each column is."""
    escape, (opening, closing) = dialect.escape, dialect.quotes
    when = provenance.analysed_at
    excluded = "included" if report.include_excluded else "left out"
    models = ", ".join(model_names(report)) or "none"
    source = escape(
        f" (id {provenance.study_id}): {_count(len(report.annotators), 'participant')} "
        "with analysed labels, "
        f"{_count(_total_labels(report), 'label')}, "
        f"{_count(provenance.labels_per_item, 'label')} per item, "
        f"excluded participants {excluded}; analysed {when:%Y-%m-%d %H:%M} "
        f"{when.tzname() or when.strftime('%z')} with advstudy {provenance.code_version}; "
        f"models: {models}. "
        "Changed: share of examples whose majority label differs from the source label; "
        "target: share whose majority is the attack's target; "
        "bound: upper bound on robust accuracy against human labels (Tramèr et al. 2020); "
        "shares with Wilson 95% intervals. "
    )
    measures = escape(
        "agreement: each model's agreement with the majority; error consistency: "
        "Cohen's kappa of the model and the humans being right about the source label "
        "(Geirhos et al. 2020); these with 95% intervals "
        f"from {report.bootstrap.examples} bootstrap replicates over examples "
        f"(seed {report.bootstrap.seed})."
    )
    return (
        f"Study {opening}{escape(provenance.title)}{closing}{source}"
        f"{dialect.kappa}: Fleiss' kappa; {dialect.alpha}: Krippendorff's alpha (nominal); "
        f"{measures}"
    )


def _status_line(report: StudyReport) -> str | None:
    if not report.settings:
        return NO_SETTINGS
    if _total_labels(report) == 0:
        return NO_LABELS
    return None


def markdown_table(report: StudyReport, provenance: Provenance) -> str:
    header = _header(report, MARKDOWN)
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 3 + ["--:"] * (len(header) - 3)) + "|",
    ]
    for entry in report.settings:
        lines.append("| " + " | ".join(_cells(entry.summary, MARKDOWN)) + " |")
    status = _status_line(report)
    before = [status, ""] if status else []
    return "\n".join([*before, *lines, "", "Table: " + caption(report, provenance, MARKDOWN), ""])


def latex_table(report: StudyReport, provenance: Provenance) -> str:
    header = _header(report, LATEX)
    columns = "lll" + "r" * (len(header) - 3)
    rows = [" & ".join(_cells(entry.summary, LATEX)) + r" \\" for entry in report.settings]
    status = _status_line(report)
    if status:
        rows.append(rf"\multicolumn{{{len(header)}}}{{l}}{{{escape_latex(status)}}} \\")
    return "\n".join(
        [
            r"% Needs \usepackage{booktabs} and \usepackage{graphicx}"
            r" (and \usepackage[utf8]{inputenc} on old LaTeX).",
            # Across both columns of a two-column paper, and scaled to the text's width:
            # ten columns and two per model, each with an interval, are wider than a page.
            r"\begin{table*}[t]",
            r"\centering",
            rf"\caption{{{caption(report, provenance, LATEX)}}}",
            rf"\label{{tab:study-{provenance.study_id}}}",
            r"\resizebox{\linewidth}{!}{%",
            rf"\begin{{tabular}}{{{columns}}}",
            r"\toprule",
            " & ".join(header) + r" \\",
            r"\midrule",
            *rows,
            r"\bottomrule",
            r"\end{tabular}}",
            r"\end{table*}",
            "",
        ]
    )


def paper_table(report: StudyReport, provenance: Provenance, table_format: str) -> str:
    """The table in ``table_format`` (a key of FORMATS); UnknownFormat for any other."""
    if table_format == "markdown":
        return markdown_table(report, provenance)
    if table_format == "latex":
        return latex_table(report, provenance)
    raise UnknownFormat.of(table_format)
