"""Deprecated location of the method interface: import it from :mod:`oltr_bench.method`."""

import warnings

from oltr_bench.method import DatasetInfo, EngineContext, LinearHead, Method, MethodModel, copy_matching  # noqa: F401

warnings.warn("oltr_bench.engine.method moved to oltr_bench.method; import Method from there", DeprecationWarning, stacklevel=2)
