from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from config.accounts import account_urlpatterns
from config.favicon import favicon
from config.health import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="researcher-home"), name="root"),
    path("accounts/", include(account_urlpatterns)),
    path("admin/", admin.site.urls),
    path("researcher/", include("study.urls")),
    path("researcher/", include("attacks.urls")),
    path("researcher/", include("analysis.urls")),
    path("researcher/", include("labeling.researcher_urls")),
    path("api/v1/", include("config.api_urls")),
    path("s/", include("labeling.urls")),
    path("healthz", healthz, name="healthz"),
    path("favicon.ico", favicon, name="favicon"),
]
# Errors use Django's own handlers, which render templates/400.html, 403.html, 404.html and
# 500.html: standalone pages in plain words (500.html needs no database).
