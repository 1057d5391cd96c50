"""Data: the list-file dataset and its readers (``lists``), decoding (``images``), the data modes
(``transforms``: parity, fast, embedded), sample streams (``samplers``) and the pre-resized
image cache (``image_cache``)."""
