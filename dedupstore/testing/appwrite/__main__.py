"""Run the Appwrite test server: ``python -m dedupstore.testing.appwrite --port 8765``."""

from .standalone import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    raise SystemExit(main())
