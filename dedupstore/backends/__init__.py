"""Storage backends that DedupStorage can wrap (or that can be used on their own)."""
