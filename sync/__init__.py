"""sync: see README.md for the architecture."""
