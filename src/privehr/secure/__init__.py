"""privehr.secure."""
