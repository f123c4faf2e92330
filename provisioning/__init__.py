"""provisioning: see README.md for the architecture."""
