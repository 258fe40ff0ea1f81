import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Import every view now (torch comes with the engine) and freeze what is loaded: these
# objects live as long as the process, and unfrozen, every full pass of the garbage
# collector walks all of them while the worker's requests wait. Under gunicorn's
# --preload the forked workers also share their memory pages instead of copying them.
get_resolver().check()  # loading the URL patterns imports every view
gc.freeze()
