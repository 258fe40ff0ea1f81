"""English formats: every time a page shows carries its zone (settings.TIME_ZONE, UTC).

Researchers and their annotators work across time zones, so a bare "14:05" is ambiguous;
``T`` appends the zone's name ("2026-12-07 14:05 UTC"). A template shows a time with
``{{ value }}`` or ``{{ value|date:"DATETIME_FORMAT" }}``.
"""

DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
TIME_FORMAT = "H:i T"
