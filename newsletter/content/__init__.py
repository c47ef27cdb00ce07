"""The content library: items, sequences, templates and rendering."""
