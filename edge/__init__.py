"""store-edge domain: tokens, rules, ledger, and the daemon that wires the parts."""
