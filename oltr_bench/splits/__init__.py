"""Benchmark splits: the list-file format, the long-tail profile, the split builder and the datasets."""
