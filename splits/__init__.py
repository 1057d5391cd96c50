"""Split specifications and the fingerprints of released lists that oltr-bench ships (data only)."""
