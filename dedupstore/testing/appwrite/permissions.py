"""Appwrite permission strings: validating, expanding ``write``, checking a grant."""

from __future__ import annotations

import re

from .errors import _invalid_param

_PERMISSION_PATTERN = re.compile(r'^(read|create|update|delete|write)\("([^"]+)"\)$')


def _parse_permissions(
    values: list[str] | None, *, allowed: tuple[str, ...], write_expands_to: tuple[str, ...]
) -> list[str] | None:
    """Validate Appwrite permission strings and expand ``write``, as the server stores them."""
    if values is None:
        return None
    result: list[str] = []
    for value in values:
        match = _PERMISSION_PATTERN.match(value)
        if not match or (match.group(1) not in allowed and match.group(1) != "write"):
            raise _invalid_param(
                "permissions",
                f'Permission "{value}" is not allowed. Must be one of: {", ".join(allowed)}.',
            )
        action, role = match.groups()
        actions = write_expands_to if action == "write" else (action,)
        for expanded in actions:
            permission = f'{expanded}("{role}")'
            if permission not in result:
                result.append(permission)
    return result


def _grants(permissions: list[str], action: str, roles: tuple[str, ...]) -> bool:
    return any(f'{action}("{role}")' in permissions for role in roles)
