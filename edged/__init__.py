"""edged: the store daemon, the one place that wires drivers, sync and the domain.

``edged.daemon`` runs one asyncio process (``edge run``); ``edged.localapi`` is the contract
the cashier UI and the command line speak to it (``docs/local-api.md``).
"""
