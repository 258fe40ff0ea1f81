"""Text cells that a spreadsheet shows as text and never runs as a formula.

OWASP's rule against CSV injection: a researcher's text (a setting's or model's name, a
reason) that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
single quote in front. Only text cells: a number keeps its sign.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_START = "^([" + "".join("\\" + start for start in FORMULA_STARTS) + "])"


def text_cell(text: str) -> str:
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def text_cells(texts: pa.Array) -> pa.Array:
    """``text_cell`` over a whole string column at once; NULL stays NULL."""
    return pc.replace_substring_regex(texts, pattern=_FORMULA_START, replacement="'\\1")
