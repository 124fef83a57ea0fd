"""Scenarios: the YAML format, its loading and validation, and the typed model."""
