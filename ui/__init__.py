"""ui: see README.md for the architecture."""
