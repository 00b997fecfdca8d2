"""URL patterns that serve a storage's objects in development (see :mod:`dedupstore.views`).

In the spirit of ``django.conf.urls.static.static``::

    from dedupstore.urls import storage_urlpatterns

    urlpatterns = [
        ...,
        *storage_urlpatterns(settings.MEDIA_URL, "default"),  # DedupStorage over files
        *storage_urlpatterns("ipfs/", "ipfs"),  # gateway_url="http://127.0.0.1:8000/ipfs/"
    ]

With ``DEBUG = False`` they are an empty list, as is a prefix that names another host.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.urls import URLPattern, re_path

from dedupstore.views import StorageArgument, serve

__all__ = ["storage_urlpatterns"]


def storage_urlpatterns(
    prefix: str,
    storage: StorageArgument = "default",
    *,
    view: Any = serve,
    insecure: bool = False,
) -> list[URLPattern]:
    """Return a pattern that serves ``storage``'s objects under ``prefix``, in DEBUG only.

    ``storage`` is a ``Storage`` instance, a ``STORAGES`` alias or a callable returning a
    storage. ``insecure=True`` serves even with ``DEBUG = False`` (for a test or a demo on
    loopback; never in production: the view is not built for hostile traffic or load).
    """
    if not prefix:
        raise ImproperlyConfigured("storage_urlpatterns() needs a URL prefix such as 'media/'")
    if (not settings.DEBUG and not insecure) or urlsplit(prefix).netloc:
        return []
    kwargs: dict[str, Any] = {"storage": storage}
    if insecure:
        kwargs["insecure"] = True
    return [re_path(rf"^{re.escape(prefix.lstrip('/'))}(?P<path>.*)$", view, kwargs=kwargs)]
