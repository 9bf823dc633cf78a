"""Delivery channels."""
