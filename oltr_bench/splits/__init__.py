"""Benchmark splits: the list-file format, long-tail profiles, the split builder, and the datasets.

``format`` (split directory contract), ``profile`` (class sizes), ``builder`` (sampling),
``scan`` (reading the user's trees), ``official`` (importing the released lists), ``spec`` and
``datasets`` (the registered datasets), with one module per OLTR benchmark: ``imagenet``,
``places``, ``ms1m``; ``glyphs`` renders the embedded benchmark.
"""
