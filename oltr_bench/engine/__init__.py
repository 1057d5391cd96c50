"""The training and evaluation harness shared by every method.

``runner`` (what ``oltr-bench run`` calls: config, stage-1 lookup in ``stage1``, the run
directory) -> ``engine`` (one run: initialise, train or fit, predict, evaluate) -> ``loop`` (the
epochs) with ``hooks`` (checkpoints, training log, TensorBoard, phase timer); the parts: ``build``
(method and model from the config), ``data`` (datasets, loaders, device inputs), ``optim`` (plan,
learning rates, optimisers, schedules in ``schedule``), ``inference`` (every batched forward pass),
``features`` (cached frozen-backbone outputs), ``checkpoint``, ``distributed``, ``provenance``
(the run manifest).
"""
