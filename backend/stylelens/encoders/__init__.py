"""Encoders: one forward pass from an aligned face to a W+ latent of a given generator.

Every encoder is an ``nn.Module`` with ``num_ws``, ``w_dim`` and ``input_resolution``
attributes whose ``forward(img)`` takes ``[N, 3, R, R]`` in [-1, 1] (``R`` = its
``input_resolution``; callers resize) and returns absolute ``ws`` ``[N, num_ws, w_dim]`` (the
average latent already added). One network family per module; :mod:`stylelens.encoders.store`
saves and loads them as ``models/<id>/encoder.safetensors`` with a card entry.
"""
