"""Publishing: signed, versioned config and data for stores.

Pushed by HQ (``push``), fanned out after ingest (``fanout``), numbered per store and kind
(``versions``).
"""
