"""What a researcher pastes into a recruiter: Prolific's study URL, MTurk's ExternalQuestion."""

from __future__ import annotations

from xml.sax.saxutils import escape

# Prolific replaces each {{%NAME%}} with the participant's ids when it sends them to us.
PROLIFIC_PARAMETERS = (
    "PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}"
)
MTURK_EXTERNAL_QUESTION_SCHEMA = (
    "http://mechanicalturk.amazonaws.com/AWSMechanicalTurkDataSchemas/2006-07-14/"
    "ExternalQuestion.xsd"
)


def prolific_study_url(join_url: str) -> str:
    return f"{join_url}?{PROLIFIC_PARAMETERS}"


def mturk_external_question(join_url: str) -> str:
    """The HIT's Question. MTurk appends assignmentId, hitId, workerId and turkSubmitTo."""
    # FrameHeight 0: MTurk sizes the frame to the worker's browser window.
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ExternalQuestion xmlns="{MTURK_EXTERNAL_QUESTION_SCHEMA}">\n'
        f"  <ExternalURL>{escape(join_url)}</ExternalURL>\n"
        "  <FrameHeight>0</FrameHeight>\n"
        "</ExternalQuestion>\n"
    )
