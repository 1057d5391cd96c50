"""Small helpers shared by every stage (atomic file output, hashing)."""
