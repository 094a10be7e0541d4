"""Shipped latency predictors (package data)."""
