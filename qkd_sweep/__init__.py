"""qkd-sweep's Python API (placeholder until the API lands)."""
