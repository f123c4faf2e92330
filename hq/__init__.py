"""The HQ end of every store-edge contract, a room per job.

``issuing`` (keys, signed codes), ``ingest`` (the event store and its MQTT worker),
``publishing`` (signed config and data pushed to stores, versions), ``reports``, ``web``
(HQ's web service); ``db`` is the database seam, ``broker`` the MQTT connection they share.
"""
