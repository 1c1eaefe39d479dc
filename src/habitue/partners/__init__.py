"""Partners domain: coalition partners, their point movements and settlement statements."""
