"""``queries[]``, ``search`` and ``total`` of the list routes, as Appwrite applies them."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from .errors import AppwriteError, _invalid_param
from .wire import _Request

#: At most this many files are counted for ``total`` (``APP_LIMIT_COUNT``).
LIMIT_COUNT = 5000
DEFAULT_PAGE_SIZE = 25
_TOKEN_SPLIT = re.compile(r"[\s@+\-*()<>~\"._/]+")


class _ListQueries:
    """Filter, search, order and page the items of a list route."""

    def _query(
        self, request: _Request, items: list[Any], attributes: frozenset[str], kind: str
    ) -> tuple[list[Any], int]:
        """Apply ``queries[]``, ``search`` and ``total`` as Appwrite's list routes do."""
        raw_queries = request.query_list("queries")
        if len(raw_queries) > 100:
            raise _invalid_param("queries", "Value must a valid array no longer than 100 items")
        search = request.query_value("search")
        if search is not None and len(search) > 256:
            raise _invalid_param("search", "Value must be a valid string and at most 256 chars")
        total_flag = request.query_value("total")
        if total_flag not in (None, "true", "false", "1", "0"):
            raise _invalid_param("total", "Value must be a valid boolean")
        filters: list[dict[str, Any]] = []
        orders: list[tuple[str, bool]] = []
        limit: int | None = None
        offset: int | None = None
        cursor: tuple[str, str] | None = None
        for raw in raw_queries:
            query = self._parse_query(raw, attributes)
            method = query["method"]
            if method == "limit":
                if limit is None:
                    limit = self._int_value(query, "limit", 0, LIMIT_COUNT)
            elif method == "offset":
                if offset is None:
                    offset = self._int_value(query, "offset", 0, LIMIT_COUNT)
            elif method in ("cursorAfter", "cursorBefore"):
                values = query.get("values") or []
                if cursor is None and values:
                    cursor = (method, str(values[0]))
            elif method in ("orderAsc", "orderDesc"):
                orders.append((query.get("attribute") or "$sequence", method == "orderDesc"))
            elif method == "select":
                continue
            else:
                filters.append(query)

        selected = [item for item in items if all(self._matches(item, q) for q in filters)]
        if search:
            words = [w for w in re.split(r"[\s@+\-*()<>~\"]+", search.lower()) if w]
            if words:
                selected = [
                    item
                    for item in selected
                    if any(
                        token.startswith(word)
                        for word in words
                        for token in re.split(
                            r"[\s@+\-*()<>~\"._/]+", f"{item.id} {item.name}".lower()
                        )
                    )
                ]
        total = min(len(selected), LIMIT_COUNT) if total_flag not in ("false", "0") else 0

        def sort_key(item: Any) -> tuple[Any, ...]:
            parts = [
                _Descending(item.attribute(attr)) if descending else item.attribute(attr)
                for attr, descending in orders
            ]
            return (*parts, item.sequence)

        selected.sort(key=sort_key)
        if cursor is not None:
            direction, cursor_id = cursor
            anchor = next((item for item in items if item.id == cursor_id), None)
            if anchor is None:
                raise AppwriteError(
                    400,
                    "general_cursor_not_found",
                    f"{kind} '{cursor_id}' for the 'cursor' value not found.",
                )
            anchor_key = sort_key(anchor)
            if direction == "cursorAfter":
                selected = [item for item in selected if sort_key(item) > anchor_key]
            else:
                selected = [item for item in selected if sort_key(item) < anchor_key]
                page_size = DEFAULT_PAGE_SIZE if limit is None else limit
                selected = selected[max(0, len(selected) - page_size - (offset or 0)) :]
        start = offset or 0
        page_size = DEFAULT_PAGE_SIZE if limit is None else limit
        return selected[start : start + page_size], total

    @staticmethod
    def _parse_query(raw: str, attributes: frozenset[str]) -> dict[str, Any]:
        if len(raw) > 4096:
            raise _invalid_param("queries", "Invalid query: Query too long")
        try:
            query = json.loads(raw)
        except ValueError:
            query = None
        if not isinstance(query, dict) or not isinstance(query.get("method"), str):
            raise _invalid_param("queries", f"Invalid query: {raw}")
        method = query["method"]
        known = {
            "equal", "notEqual", "lessThan", "lessThanEqual", "greaterThan",
            "greaterThanEqual", "between", "notBetween", "isNull", "isNotNull", "contains",
            "notContains", "startsWith", "notStartsWith", "endsWith", "notEndsWith",
            "search", "notSearch", "select", "orderAsc", "orderDesc", "orderRandom",
            "cursorAfter", "cursorBefore", "limit", "offset", "and", "or",
        }  # fmt: skip
        if method not in known:
            raise _invalid_param("queries", f"Invalid query: Invalid query method: {method}")
        if method in ("and", "or"):
            for nested in query.get("values") or []:
                _ListQueries._parse_query(json.dumps(nested), attributes)
            return query
        attribute = query.get("attribute")
        needs_attribute = method not in ("limit", "offset", "cursorAfter", "cursorBefore", "select")
        if needs_attribute and attribute is None and method in ("orderAsc", "orderDesc"):
            needs_attribute = False
        if needs_attribute and method != "orderRandom" and attribute not in attributes:
            raise _invalid_param(
                "queries", f"Invalid query: Attribute not found in schema: {attribute}"
            )
        values = query.get("values")
        if values is not None and not isinstance(values, list):
            raise _invalid_param("queries", "Invalid query: Values must be an array")
        return query

    @staticmethod
    def _int_value(query: dict[str, Any], what: str, low: int, high: int) -> int:
        values = query.get("values") or []
        value = values[0] if values else None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _invalid_param(
                "queries",
                f"Invalid query: Invalid {what}: Value must be a valid range between "
                f"{low:,} and {high:,}",
            )
        return value

    def _matches(self, item: Any, query: dict[str, Any]) -> bool:
        method = query["method"]
        values = query.get("values") or []
        if method in ("and", "or"):
            results = (self._matches(item, nested) for nested in values)
            return all(results) if method == "and" else any(results)
        value = item.attribute(query["attribute"])
        text = str(value)
        checks: dict[str, Callable[[], bool]] = {
            "equal": lambda: value in values,
            "notEqual": lambda: value not in values,
            "lessThan": lambda: _compare(value, values, lambda a, b: a < b),
            "lessThanEqual": lambda: _compare(value, values, lambda a, b: a <= b),
            "greaterThan": lambda: _compare(value, values, lambda a, b: a > b),
            "greaterThanEqual": lambda: _compare(value, values, lambda a, b: a >= b),
            "between": lambda: len(values) == 2 and values[0] <= value <= values[1],
            "notBetween": lambda: len(values) == 2 and not values[0] <= value <= values[1],
            "isNull": lambda: value is None,
            "isNotNull": lambda: value is not None,
            "contains": lambda: any(str(v) in text for v in values),
            "notContains": lambda: not any(str(v) in text for v in values),
            "startsWith": lambda: any(text.startswith(str(v)) for v in values),
            "notStartsWith": lambda: not any(text.startswith(str(v)) for v in values),
            "endsWith": lambda: any(text.endswith(str(v)) for v in values),
            "notEndsWith": lambda: not any(text.endswith(str(v)) for v in values),
            "search": lambda: any(str(v).lower() in text.lower() for v in values),
            "notSearch": lambda: not any(str(v).lower() in text.lower() for v in values),
        }
        return checks[method]()


def _compare(value: Any, values: list[Any], op: Callable[[Any, Any], bool]) -> bool:
    try:
        return bool(values) and op(value, values[0])
    except TypeError:
        return False


class _Descending:
    """Invert the ordering of one sort-key component."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __gt__(self, other: _Descending) -> bool:
        return bool(other.value > self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)
