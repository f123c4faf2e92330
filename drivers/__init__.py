"""drivers: the box's hardware (scanners, camera, receipt printer), knowing nothing of coupons.

Each driver may use a domain type it prints or reads (``edge.printdoc``, ``edge.qrfit``),
never the daemon. See ``docs/ARCHITECTURE.md``.
"""
