"""privehr.report."""
