"""The SDK's ``Client.call`` with a timeout: a private copy whose ``requests`` is ours."""

from __future__ import annotations

import types
from typing import Any

import requests
from django.core.exceptions import ImproperlyConfigured


class _Transport:
    """Stand in for the ``requests`` module inside our copy of ``Client.call``."""

    def __init__(self, session: requests.Session, timeout: float | None) -> None:
        self.session = session
        self.timeout = timeout

    def request(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        return self.session.request(method, url, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Anything else the SDK may look up (exceptions, helpers) comes from requests.
        return getattr(requests, name)


def _client_with_transport(transport: _Transport) -> Any:
    """Return an SDK ``Client`` whose HTTP calls go through ``transport``."""
    from appwrite.client import Client

    sdk_call = Client.call
    if "requests" not in sdk_call.__code__.co_names:  # pragma: no cover - SDK changed
        raise ImproperlyConfigured(
            "This appwrite SDK's Client.call no longer uses requests.request; "
            "dedupstore supports appwrite>=27,<28"
        )
    namespace = dict(sdk_call.__globals__)
    namespace["requests"] = transport
    call = types.FunctionType(
        sdk_call.__code__, namespace, sdk_call.__name__, sdk_call.__defaults__, None
    )
    client = Client()
    # An instance attribute: chunked_upload and every service call go through self.call.
    client.call = types.MethodType(call, client)
    return client
