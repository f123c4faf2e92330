"""Reports over HQ's database (``stores``: the per-store text and JSON report)."""
