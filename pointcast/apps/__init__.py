"""Pinpoint projects (applications) and their settings."""
