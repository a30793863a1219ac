"""privehr.evaluation."""
