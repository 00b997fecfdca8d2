"""Compatibility: the checks of ``save()`` and ``open()`` live in ``dedupstore.utils``."""

from dedupstore.utils import check_readable, prepare_save, refuse_write_mode

__all__ = ["check_readable", "prepare_save", "refuse_write_mode"]
