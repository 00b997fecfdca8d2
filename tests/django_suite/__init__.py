"""Django's own storage test suites, run against ``DedupStorage`` (see ``run.py``)."""
