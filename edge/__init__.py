"""store-edge domain: codes, rules, ledger, cards, orders, clock, events, config.

The innermost layer: it imports nothing from the daemon (``edged``), ``drivers``, ``sync``,
``ui``, ``hq`` or the command lines, nor any hardware, MQTT, UI or web library. The layer
contract is in ``pyproject.toml`` (``[tool.importlinter]``); see ``docs/ARCHITECTURE.md``.
"""
