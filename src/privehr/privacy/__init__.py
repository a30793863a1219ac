"""privehr.privacy."""
