"""drivers: see README.md for the architecture."""
