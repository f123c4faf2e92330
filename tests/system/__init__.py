"""The fault suite: storms that prove the product's promises (short in the test run; long by
``make proof``, which prints a table of what each scenario injected and checked)."""
