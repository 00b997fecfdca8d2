"""The file token routes: create, list, get, update and delete file tokens."""

from __future__ import annotations

import hashlib
import hmac
import json

from .base import _ServerBase
from .errors import AppwriteError, _invalid_param
from .models import (
    _TOKEN_ATTRIBUTES,
    RESOURCE_TOKEN_MAX_AGE,
    _b64url,
    _format_date,
    _parse_date,
    _Token,
    _unique_id,
)
from .wire import _Request, _Response


class _TokenRoutes(_ServerBase):
    """``/tokens/buckets/{bucketId}/files/{fileId}`` and ``/tokens/{tokenId}``."""

    def _create_token(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "tokens.write")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        body = self._json_body(request)
        expire = body.get("expire")
        moment = None
        if expire is not None:
            moment = _parse_date(expire, "expire")
            if moment <= self.now():
                raise _invalid_param("expire", "Value must be valid date in the future.")
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        stored = self._file(bucket, file_id)
        token_id = _unique_id()
        issued = int(self.now().timestamp())
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        claims = {
            "tokenId": token_id,
            "resourceId": f"{bucket_id}:{file_id}",
            "resourceType": "files",
            "resourceInternalId": f"{bucket.sequence}:{stored.sequence}",
            "iat": issued,
            "exp": issued + RESOURCE_TOKEN_MAX_AGE,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._token_key, f"{header}.{payload}".encode(), hashlib.sha256)
        token = _Token(
            id=token_id,
            sequence=self._next_sequence(),
            created_at=_format_date(self.now()),
            bucket_id=bucket_id,
            file_id=file_id,
            bucket_sequence=bucket.sequence,
            file_sequence=stored.sequence,
            expire=moment,
            secret=f"{header}.{payload}.{_b64url(signature.digest())}",
        )
        with self._state_lock:
            self._tokens[token_id] = token
        return _Response.json(201, token.to_json())

    def _list_tokens(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "tokens.read")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        self._file(bucket, file_id)
        with self._state_lock:
            tokens = [
                t for t in self._tokens.values() if (t.bucket_id, t.file_id) == (bucket_id, file_id)
            ]
        page, total = self._query(request, tokens, _TOKEN_ATTRIBUTES, "Token")
        return _Response.json(200, {"total": total, "tokens": [t.to_json() for t in page]})

    def _token(self, token_id: str) -> _Token:
        self._check_uid("tokenId", token_id)
        with self._state_lock:
            token = self._tokens.get(token_id)
        if token is None:
            raise AppwriteError(404, "token_not_found")
        return token

    def _get_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.read")
        return _Response.json(200, self._token(token_id).to_json())

    def _update_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.write")
        body = self._json_body(request)
        token = self._token(token_id)
        expire = body.get("expire")
        moment = None if expire is None else _parse_date(expire, "expire")
        if moment is not None and moment <= self.now():
            raise _invalid_param("expire", "Value must be valid date in the future.")
        with self._state_lock:
            token.expire = moment
        return _Response.json(200, token.to_json())

    def _delete_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.write")
        token = self._token(token_id)
        with self._state_lock:
            self._tokens.pop(token.id, None)
        return _Response.no_content()
