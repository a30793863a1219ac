"""privehr.ehr."""
