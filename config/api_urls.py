"""The researchers' REST API, mounted at /api/v1/; its OpenAPI 3 schema at /api/v1/schema/."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView
from rest_framework.routers import SimpleRouter

from analysis.api import StudyExportView, StudyPaperTableView, StudyResultsView
from attacks.api import (
    AttackListView,
    AttackSettingViewSet,
    ClassifierModelViewSet,
    GenerationJobViewSet,
)
from labeling.researcher_api import (
    ParticipantDeletionView,
    ParticipantExclusionView,
    StudyParticipantsView,
    StudyParticipantView,
)
from study.api import StudyViewSet

# Path converters, not regexes: tests/test_researcher_urls_are_closed.py enumerates these.
router = SimpleRouter(use_regex_path=False)
router.register("models", ClassifierModelViewSet, basename="api-model")
router.register("attack-settings", AttackSettingViewSet, basename="api-setting")
router.register("jobs", GenerationJobViewSet, basename="api-job")
router.register("studies", StudyViewSet, basename="api-study")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("attacks/", AttackListView.as_view(), name="api-attacks"),
    *router.urls,
    path("studies/<int:study_id>/results/", StudyResultsView.as_view(), name="api-study-results"),
    path(
        "studies/<int:study_id>/exports/<slug:table>.<slug:export_format>",
        StudyExportView.as_view(),
        name="api-study-export",
    ),
    path(
        "studies/<int:study_id>/participants/",
        StudyParticipantsView.as_view(),
        name="api-study-participants",
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/",
        StudyParticipantView.as_view(),
        name="api-study-participant",
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/exclude/",
        ParticipantExclusionView.as_view(exclude=True),
        name="api-participant-exclude",
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/include/",
        ParticipantExclusionView.as_view(exclude=False),
        name="api-participant-include",
    ),
    path(
        "studies/<int:study_id>/participants/<int:participant_id>/delete/",
        ParticipantDeletionView.as_view(),
        name="api-participant-delete",
    ),
    path(
        "studies/<int:study_id>/paper-table/",
        StudyPaperTableView.as_view(),
        name="api-study-paper-table",
    ),
]
