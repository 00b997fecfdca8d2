"""A faithful Appwrite Storage server for tests, demos and benchmarks.

No Appwrite server runs in a test suite, so this package implements the storage part of
Appwrite's REST API as the ``appwrite`` Python SDK 27 uses it (read in the SDK's source and
seen on its wire): buckets and files, API-key and project checks in Appwrite's
order, parallel and out-of-order chunked uploads with a per-file lock, the resume probe,
``Range`` downloads, ``queries[]`` lists with ``search`` and ``total``, and Appwrite's
exact error bodies and response ``Content-Type`` headers. File bytes live in a private
temporary directory, so a 1 GiB upload never sits in memory.

Use it as a context manager::

    with AppwriteTestServer() as server:
        client = server.client()            # an appwrite.client.Client pointed at it
        storage = AppwriteStorage(**server.storage_options(bucket_id="media"))

or, in pytest, with ``pytest_plugins = ["dedupstore.testing.appwrite"]`` and the
``appwrite_server`` fixture. ``server.requests`` logs every request (method, path,
status, bytes received and sent) so tests can count round trips.

Known approximations, chosen because no real server can be compared here:

* the MIME type of a stored file is sniffed from magic numbers, JSON and UTF-8 text,
  an approximation of the libmagic detection the real server does;
* ``search`` is a case-insensitive word-prefix match on the ID and name, where the real
  server runs a MariaDB full-text search;
* ``/preview`` returns the stored bytes of images and a fixed 1x1 PNG for anything else;
* encryption and compression are recorded on buckets but never applied, so
  ``sizeActual`` always equals ``sizeOriginal``.

Modules, by route family: ``server`` (``AppwriteTestServer``: lifecycle, helpers for
tests, routing), ``base`` (state and the checks every route runs: project, key, scopes,
permissions, file tokens), ``buckets``, ``files`` (chunked uploads included), ``tokens``,
``downloads`` (``Range``, view, preview) and ``queries``; ``models`` (what is stored),
``wire`` (requests, responses, multipart), ``errors``, ``mime``, ``permissions``,
``httpd`` (the HTTP server), ``fixtures`` (pytest) and ``standalone`` (``python -m``).
"""

from __future__ import annotations

from .base import DEFAULT_STORAGE_LIMIT
from .errors import AppwriteError
from .files import CHUNK_SIZE
from .fixtures import appwrite_server
from .mime import sniff_mime_type
from .server import AppwriteTestServer
from .standalone import main
from .wire import InjectedFault, RequestRecord

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_STORAGE_LIMIT",
    "AppwriteError",
    "AppwriteTestServer",
    "InjectedFault",
    "RequestRecord",
    "appwrite_server",
    "main",
    "sniff_mime_type",
]
