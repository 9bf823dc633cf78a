"""Endpoints: where messages go (an address on a channel), with the attributes segments select on."""
