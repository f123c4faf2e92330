"""HQ's web service: customer pages and the operators' dashboard (to be built here)."""
