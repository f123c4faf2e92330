"""The command lines, the outermost layer: ``edge`` (``cli.edge``) and ``edge-hq`` (``cli.hq``).

Nothing imports them; they start the daemon, the cashier UI and HQ's workers.
"""
