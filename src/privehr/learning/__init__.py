"""privehr.learning."""
