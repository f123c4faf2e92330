"""Publishing: signed, versioned config and data for stores: pushed by HQ (``push``), fanned out
after ingest (``fanout``), numbered per store and kind (``versions``).
"""
