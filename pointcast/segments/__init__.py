"""Segments: dimensional audiences (and, later, imported ones), stored as given and versioned."""
