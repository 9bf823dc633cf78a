"""Pieces shared by the Pinpoint features: pagination and limits from Pinpoint's quotas."""
