"""Training: the StyleGAN2 trainer, and the attribute network (``attributes``).

StyleGAN2 modules: ``config`` (TrainConfig), ``augment`` (DiffAugment-style one-of groups),
``loss`` (objective and schedules as pure functions), ``state`` (networks, optimisers,
checkpoint), ``loop`` (minibatch phases, ticks, run directory), ``export`` (run -> model
directory), ``cli`` (the ``train`` and ``export`` subcommands). See ``docs/training.md``.
"""
