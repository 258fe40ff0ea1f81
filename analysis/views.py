from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from analysis.queries import setting_summaries, study_progress
from config.auth import researcher_required
from study.queries import owned_study


@researcher_required
@require_GET
def study_analysis(request: HttpRequest, study_id: int) -> HttpResponse:
    study = owned_study(request.user, study_id)
    include_excluded = request.GET.get("include_excluded") == "1"
    return render(
        request,
        "analysis/study_analysis.html",
        {
            "study": study,
            "summaries": setting_summaries(study, include_excluded=include_excluded),
            "progress": study_progress(study),
            "include_excluded": include_excluded,
        },
    )
