"""Our networks against numbers recorded from the official implementations.

The values below were produced once by NVIDIA's stylegan2-ada-pytorch ``training/networks.py``
(float32 on CPU, reference ops) for the fixture weights ``tests.formats.tiny_weights(seed=0)``
and the seeds 0 and 1 (z = np.random.RandomState(seed).randn(1, z_dim), as ``gen_images.py``).
rosinality's stylegan2-pytorch gave the same images within 3e-6 for the same weights written in
its format. Neither project's code is part of StyleLens; only these outputs are.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stylelens.checkpoints import load_discriminator, load_generator
from stylelens.render import z_from_seed

# img[:, :, 14:16, 14:16] for seeds (0, 1), flattened.
NVIDIA_G_PSI_1 = [
    2.531157, 2.843903, 2.487766, 1.749213, 5.495764, 5.352827, 6.165285, 5.218988,
    -2.258028, -3.326488, -1.872262, -2.024423, -1.898033, -1.951818, -1.324491, -1.551005,
    -0.670625, -0.791130, -0.185377, -0.309889, -0.771648, -1.155837, 0.128815, -0.349192,
]  # fmt: skip
NVIDIA_G_PSI_HALF = [
    0.337818, 0.356415, 0.239363, -0.281206, 3.255674, 2.985887, 3.458357, 2.834595,
    -2.026548, -2.147200, -1.998333, -1.894585, -2.545426, -2.486040, -2.237803, -2.449644,
    -0.881953, -0.870545, -0.426460, -0.603409, -1.915917, -1.908806, -1.566251, -1.516913,
]  # fmt: skip
# D logits of the four images above (psi 1 then psi 0.5).
NVIDIA_D = [0.416706, -0.118731, 0.265517, -0.227575]


def test_matches_nvidia_reference(models_dir: Path):
    for model in ("tiny-nvidia", "tiny-rosinality"):
        G, _ = load_generator(models_dir / model)
        D, _ = load_discriminator(models_dir / model)
        z = torch.cat([z_from_seed(s, G.z_dim) for s in (0, 1)])
        imgs = []
        for psi, expected in ((1.0, NVIDIA_G_PSI_1), (0.5, NVIDIA_G_PSI_HALF)):
            img = G(z, truncation_psi=psi)
            got = img[:, :, 14:16, 14:16].flatten()
            torch.testing.assert_close(got, torch.tensor(expected), rtol=0, atol=2e-5)
            imgs.append(img)
        logits = D(torch.cat(imgs)).flatten()
        torch.testing.assert_close(logits, torch.tensor(NVIDIA_D), rtol=0, atol=2e-5)
