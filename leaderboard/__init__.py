"""Leaderboard entries shipped with oltr-bench, one JSON file per entry (data only)."""
