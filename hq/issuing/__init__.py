"""Issuing: HQ's signing keys (``keystore``) and the signed codes it issues (``codes``)."""
