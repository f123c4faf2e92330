"""Publishing: signed, versioned config and data pushed to stores (``push``, ``versions``)."""
