from django.urls import path

from analysis import export_views, paper_views, views

urlpatterns = [
    path("studies/<int:study_id>/analysis/", views.study_analysis, name="study-analysis"),
    path("studies/<int:study_id>/dashboard/", views.study_dashboard, name="study-dashboard"),
    path(
        "studies/<int:study_id>/dashboard/progress.json",
        views.study_progress_json,
        name="study-progress-json",
    ),
    path(
        "studies/<int:study_id>/dashboard/charts/<slug:chart>.<slug:chart_format>",
        views.study_chart,
        name="study-chart",
    ),
    path("studies/<int:study_id>/gallery/", views.study_gallery, name="study-gallery"),
    path(
        "studies/<int:study_id>/examples/<int:example_id>.png",
        views.study_example_image,
        name="study-example-image",
    ),
    path(
        "studies/<int:study_id>/exports/<slug:table>.<slug:export_format>",
        export_views.study_export,
        name="study-export",
    ),
    path(
        "studies/<int:study_id>/analysis/paper-table/",
        paper_views.study_paper_table,
        name="study-paper-table",
    ),
    path(
        "studies/<int:study_id>/analysis/paper-table/download",
        paper_views.study_paper_table_download,
        name="study-paper-table-download",
    ),
]
