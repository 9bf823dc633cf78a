"""Webhook (custom channel) delivery."""
