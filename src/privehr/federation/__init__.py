"""privehr.federation."""
