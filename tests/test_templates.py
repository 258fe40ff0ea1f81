"""Template mistakes that render as text instead of failing."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_one_line_comment_spans_lines() -> None:
    # Django's {# ... #} ends at the line's end: a comment over two lines shows on the page.
    broken = [
        f"{path.relative_to(ROOT)}:{number}"
        for pattern in ("templates/**/*.html", "*/templates/**/*.html")
        for path in ROOT.glob(pattern)
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "{#" in line and "#}" not in line.split("{#", 1)[1]
    ]
    assert broken == []
