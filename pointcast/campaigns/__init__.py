"""Campaigns: what to send, to which segment, when, through which channel or hook; versioned."""
