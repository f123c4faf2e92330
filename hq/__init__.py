"""The HQ side of every store-edge contract: keys, issuing codes, checking cards."""
