"""MTurk shows an ExternalQuestion inside an iframe on its own site: let it, and only it.

Django's clickjacking protection (``X-Frame-Options: DENY``) would blank the
page there. Annotator pages are exempt from that header and say instead, with
CSP ``frame-ancestors``, that only this site and MTurk's two hosts may frame
them, so no other site can. (Inside the frame, the session and CSRF cookies
are third-party: a deployment that recruits on MTurk sets
``COOKIES_SAMESITE=None``, see config/settings.py.)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, HttpResponseBase
from django.views.decorators.clickjacking import xframe_options_exempt

MTURK_FRAME_ANCESTORS = "'self' https://www.mturk.com https://workersandbox.mturk.com"

View = Callable[..., HttpResponseBase]


def framable_by_mturk(view: View) -> View:
    exempt = xframe_options_exempt(view)

    @wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponseBase:
        response = exempt(request, *args, **kwargs)
        response["Content-Security-Policy"] = f"frame-ancestors {MTURK_FRAME_ANCESTORS}"
        return response

    return wrapped
