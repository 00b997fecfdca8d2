"""The logic of ``manage.py dedupstore <command>``: one module per command.

Each command takes a ``DedupStorage`` and returns a ``Report`` (``dedupstore.ops.base``);
the management command only parses options, picks the storages and prints.
"""
