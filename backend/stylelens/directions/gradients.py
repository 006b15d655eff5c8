"""Attribute gradients in W: what a small move of the latent does to every score, on average.

For faces ws_k, the attribute network's score a has a gradient ``g_ak = d score_a / d ws_k``
[num_ws, w_dim]. Moving a w shared by the ws of a layer range L by a small delta changes the
mean score of a by ``G_a . delta`` with ``G_a = mean_k sum_(i in L) g_aki``, the **range
gradient**. Its direction raises a fastest; conditioning it on the other attributes' range
gradients (``interfacegan.condition``) gives a delta that raises a while every other
attribute's mean score stays put to first order. The clothes' mean colour
(``measure.clothes_colour``, three more quantities) is held too: the attribute network has no
clothes label, and without it the side effects move into the clothes.

That is InterFaceGAN's conditional manipulation with the generator's real local behaviour in
place of linear boundaries. It matters where an attribute is not a linear function of w: the
boundaries of such attributes fit poorly (smile, yaw, mouth opening in the interim model), and
conditioning on them leaves large side effects, while the mean gradients are measured where
the faces are.
"""

from __future__ import annotations

import torch

from stylelens.directions.core import layer_indices
from stylelens.directions.measure import attribute_scores, clothes_colour
from stylelens.networks.attributes import AttributeNet
from stylelens.networks.runtime import autocast
from stylelens.networks.stylegan2 import Generator


def mean_score_gradients(
    G: Generator,
    net: AttributeNet,
    ws: torch.Tensor,
    *,
    batch: int = 16,
    precision: str = "bfloat16",
) -> torch.Tensor:
    """Mean over faces of the gradient of every score and of the clothes colour with respect
    to each ws.

    Args:
        ws: [N, num_ws, w_dim] faces.

    Returns:
        [A + 3, num_ws, w_dim]: the A scores of ``measure.score_names(net)``, then the clothes'
        mean R, G and B. Costs one forward and A + 3 backward passes per batch of faces.
    """
    if ws.ndim != 3 or len(ws) == 0:
        raise ValueError(f"need ws [N, num_ws, w_dim], got {list(ws.shape)}")
    device = next(G.parameters()).device
    total = torch.zeros(0)
    for start in range(0, len(ws), batch):
        x = ws[start : start + batch].to(device).detach().requires_grad_(True)
        with torch.enable_grad():
            with autocast(device, precision):
                img = G.synthesis(x)
            img = img.float()
            scores = torch.cat([attribute_scores(net, img), clothes_colour(img)], dim=1)
            rows = []
            for a in range(scores.shape[1]):
                last = a == scores.shape[1] - 1
                (g,) = torch.autograd.grad(scores[:, a].sum(), x, retain_graph=not last)
                rows.append(g.double().sum(dim=0).cpu())
        batch_sum = torch.stack(rows)  # [A + 3, num_ws, w_dim]
        total = batch_sum if total.numel() == 0 else total + batch_sum
    return (total / len(ws)).float()


def range_gradients(grads: torch.Tensor, layers: str) -> torch.Tensor:
    """[K, num_ws, w_dim] per-ws gradients -> [K, w_dim]: the gradients with respect to one w
    shared by the ws of ``layers`` (the sum of theirs)."""
    return grads[:, layer_indices(layers, grads.shape[1])].sum(dim=1)
