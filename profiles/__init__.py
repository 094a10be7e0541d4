"""Shipped latency profiles (package data)."""
