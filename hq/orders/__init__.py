"""Orders that reach HQ without a store: assigned to the nearest open store (``assign``)."""
