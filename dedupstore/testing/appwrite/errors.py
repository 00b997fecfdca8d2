"""Appwrite's error answers: ``AppwriteError`` and the messages the real server sends."""

from __future__ import annotations

# Error messages from Appwrite's app/config/errors.php (and the overrides seen in source).
_MESSAGES = {
    "storage_file_not_found": "The requested file could not be found.",
    "storage_bucket_not_found": "Storage bucket with the requested ID could not be found.",
    "storage_file_already_exists": "A storage file with the requested ID already exists.",
    "storage_bucket_already_exists": (
        "A storage bucket with the requested ID already exists. Try again with a different "
        "ID or use ID.unique() to generate a unique ID."
    ),
    "storage_invalid_appwrite_id": (
        "The value for x-appwrite-id header is invalid. Please check the value of the "
        "x-appwrite-id header is a valid id and not unique()."
    ),
    "storage_invalid_content_range": (
        "The content range is invalid. Please check the value of the Content-Range header."
    ),
    "storage_invalid_file_size": "File size not allowed",
    "storage_file_type_unsupported": "File extension not allowed",
    "storage_file_empty": "Empty file passed to the endpoint.",
    "storage_invalid_range": (
        "The requested range is not satisfiable. Please check the value of the Range header."
    ),
    "storage_bucket_transformations_disabled": (
        "Image transformations are disabled for the requested bucket."
    ),
    "user_unauthorized": "The current user is not authorized to perform the requested action.",
    "project_not_found": (
        "Project with the requested ID could not be found. Please check the value of the "
        "X-Appwrite-Project header to ensure the correct project ID is being used."
    ),
    "general_rate_limit_exceeded": "File upload is busy. Try again.",
    "token_not_found": "The requested token could not be found.",
    "general_server_error": "Server Error",
}
_CUSTOM_ID_DESCRIPTION = (
    "Parameter must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, period, "
    "hyphen, and underscore. Can't start with a special char"
)
_UID_DESCRIPTION = (
    "UID must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, and underscore. "
    "Can't start with a leading underscore"
)


class AppwriteError(Exception):
    """An Appwrite error response: HTTP status, error ``type`` and ``message``."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.message = message or _MESSAGES.get(type, "Server Error")
        self.headers = headers or {}
        super().__init__(f"{status} {type}: {self.message}")


def _invalid_param(param: str, description: str) -> AppwriteError:
    return AppwriteError(400, "general_argument_invalid", f"Invalid `{param}` param: {description}")


def _not_optional(param: str) -> AppwriteError:
    return AppwriteError(400, "general_argument_invalid", f'Param "{param}" is not optional.')
