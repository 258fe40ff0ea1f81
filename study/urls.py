from django.urls import path

from study import views

urlpatterns = [
    path("", views.researcher_home, name="researcher-home"),
    path("studies/new/", views.study_create, name="study-create"),
    path("studies/<int:study_id>/", views.study_detail, name="study-detail"),
]
