"""URLs of the demo: the development view serves each storage run_demo.py links to."""

from __future__ import annotations

from django.conf import settings

from dedupstore.urls import storage_urlpatterns

# run_demo.py fills in DEMO_SERVED: URL prefix -> STORAGES alias.
urlpatterns = [
    pattern
    for prefix, alias in getattr(settings, "DEMO_SERVED", {"media/": "default"}).items()
    for pattern in storage_urlpatterns(prefix, alias)
]
