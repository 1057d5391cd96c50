"""The methods, one module each, installed as ``oltr_bench.baselines``.

Importing this package imports every method module, which registers it in
:data:`oltr_bench.registry.METHODS`. Configs live in ``configs/<dataset>/<method>.yaml``.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
