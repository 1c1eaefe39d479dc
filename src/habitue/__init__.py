"""Habitué: an open-source loyalty-program engine."""

__version__ = "0.1.0"
