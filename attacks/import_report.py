"""An imported setting's report in sentences, for the command's output and the setting's page.

The numbers themselves are stored in the setting's config (``import_report``) by
``attacks.imports``; this only words them.
"""

from __future__ import annotations

from typing import Any

from attacks.models import AttackSetting

_GROUPS_SHOWN = 20  # groups of identical images named; a count says how many more


def describe_import(setting: AttackSetting) -> list[str]:
    """The import report in sentences, for the command's output and the setting's page."""
    provenance, report = setting.config["provenance"], setting.config["import_report"]
    lines = [
        f"{report['count']} examples from {provenance['file_name']} "
        f"(SHA-256 {provenance['file_sha256']}), given as {provenance['image_form']}; "
        f"{report['with_target']} with a target label.",
        _describe_rounding(report["rounding"]),
        _describe_distances(report["distances"]),
    ]
    if setting.norm is not None:
        lines.append(_describe_budget(setting, report["budget"], report["count"]))
    if "duplicates" in report:  # imports made before duplicates were looked for have none
        lines.append(describe_duplicates(report["duplicates"]))
    if report["same_file_as"]:
        lines.append(f"The same file was imported before as {', '.join(report['same_file_as'])}.")
    lines += [
        f"Model {item['model']} predicts the source label on {item['agrees_with_source']} "
        f"of {report['count']}."
        for item in report["predictions"]
    ]
    return lines


def describe_duplicates(groups: list[list[int]]) -> str:
    """How many images are pixel-identical to another of the set, and at which positions."""
    if not groups:
        return "No two images are identical."
    copies = sum(len(group) for group in groups)
    shown = "; ".join(_positions(group) for group in groups[:_GROUPS_SHOWN])
    more = len(groups) - _GROUPS_SHOWN
    rest = f"; and {more} more groups" if more > 0 else ""
    return (
        f"{copies} images are pixel-identical to another image of the set, at positions "
        f"(counted from 0) {shown}{rest}: each copy would be labelled as an example of its own."
    )


def _positions(group: list[int]) -> str:
    return ", ".join(map(str, group[:-1])) + f" and {group[-1]}"


def _describe_rounding(rounding: dict[str, int]) -> str:
    if not rounding["off_grid_values"]:
        return "Every pixel value was already on the 8-bit grid: stored as given."
    return (
        f"{rounding['off_grid_values']} pixel values were off the 8-bit grid and were rounded "
        f"to the nearest level; {rounding['half_level_ties']} exact half levels went toward "
        "the clean image (or to the even level where the source is unknown)."
    )


def _describe_distances(summary: dict[str, float] | None) -> str:
    if summary is None:
        return "Distances: unknown (the set gives source labels, not source images)."
    return (
        f"Largest distances to the clean images: L-inf {summary['linf_max']:.4f} "
        f"({summary['linf_max_levels']}/255), L2 {summary['l2_max']:.4f}, "
        f"L0 {summary['l0_max']} values."
    )


def _describe_budget(setting: AttackSetting, budget: dict[str, Any], count: int) -> str:
    """The claim (the setting's norm and eps) and how the stored examples keep it."""
    claimed = f"The claimed budget ({setting.norm} eps {setting.eps:g})"
    if budget.get("unchecked"):
        return f"{claimed} cannot be checked: the source images are unknown."
    if not budget["examples_exceeding"]:
        return f"{claimed} holds for all {count} examples."
    text = (
        f"{claimed} is exceeded by {budget['examples_exceeding']} of {count} examples, "
        f"by at most {_amount(budget['max_overshoot'], budget['overshoot_unit'])}"
    )
    if "values_outside_ball" in budget:
        text += f" ({budget['values_outside_ball']} pixel values outside the ball)"
    return text + ". The images are stored as published, not clipped."


def _amount(value: float, unit: str) -> str:
    return f"{value:g}/255" if unit == "1/255" else f"{value:g} {unit}"
