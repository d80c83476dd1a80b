"""Locust scenarios, the compare command and the capacity search (see README)."""
