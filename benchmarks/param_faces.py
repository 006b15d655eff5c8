"""How well a model draws a SynthFaces face from the face's parameters put in z.

For held-out seeds (from 70,000,000: never trained on, fitted on or evaluated with), the
face ``render_face(seed)`` is set beside ``G([param_latent(seed), noise])`` (constant synthesis
noise, the z noise dimensions from a fixed seed). Reported per model:

* the mean absolute pixel difference (0-255), at full size and at a quarter of it;
* for every attribute, how well the attribute network's reading of the generated face agrees
  with the face's true label: R² for continuous attributes, accuracy for categorical ones;
  beside it, the network's agreement on the real face (its own error, the ceiling);
* for glasses and beard, how often the network reads them *present* (any class but "none") on
  the faces whose parameters say none and on those whose parameters say some: whether the
  generator draws the part its parameters ask for, or draws it regardless;
* for a model whose discriminator sees the parameters (``stylelens train --condition-d``),
  how often that D scores a real held-out face higher with its own parameters than with the
  next seed's, all of them and each labelled one alone: whether D has learned what matching
  parameters look like (0.5: it has not).

A model whose z does not hold the parameters (the shipped one before ``--supervise``) scores
R² near or below 0: the numbers say how much of the parameter space the generator obeys.

    python benchmarks/param_faces.py --models DIR [DIR ...] [--n 200] [--figure out.png] \
        [--write-docs]     # the table into docs/training.md (section param-faces)
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import ROOT, machine, write_docs

from stylelens.checkpoints.attribute_net import load_attribute_net
from stylelens.checkpoints.native import load_card, load_discriminator, load_generator
from stylelens.data.synthfaces import labels_vector, render_face, sample_params
from stylelens.data.synthfaces.latent import PARAM_NAMES, param_latent
from stylelens.render import image_grid, to_uint8
from stylelens.training.supervise import supervised_latents

FIRST_SEED = 70_000_000


def _agreement(pred: np.ndarray, true: np.ndarray, specs) -> dict[str, float]:
    out = {}
    for j, a in enumerate(specs):
        if a.kind == "categorical":
            out[a.name] = round(float((pred[:, j] == true[:, j]).mean()), 3)
        else:
            resid = ((pred[:, j] - true[:, j]) ** 2).sum()
            total = ((true[:, j] - true[:, j].mean()) ** 2).sum()
            out[a.name] = round(float(1 - resid / max(total, 1e-12)), 3)
    return out


def _share(mask: np.ndarray) -> float | None:
    return round(float(mask.mean()), 3) if mask.size else None  # None: no face in that group


def _presence(pred: np.ndarray, true: np.ndarray, specs) -> dict[str, dict[str, float | None]]:
    """For the categorical attributes whose class 0 is "none" (glasses, beard): the share read
    present (class > 0) among the faces whose label says none and among those that say some."""
    out = {}
    for j, a in enumerate(specs):
        if a.kind != "categorical" or a.classes[0] != "none":
            continue
        absent, present = true[:, j] == 0, true[:, j] > 0
        out[a.name] = {
            "read_present_where_none": _share(pred[absent, j] > 0),
            "read_present_where_some": _share(pred[present, j] > 0),
        }
    return out


def d_matching(
    model: Path, real: torch.Tensor, pz: torch.Tensor, true: np.ndarray, specs, batch: int = 16
) -> dict[str, float] | None:
    """For a conditional D: the share of the real faces it scores higher with their own
    parameters than with the next face's ("all"), and with only one labelled parameter taken
    from the next face (among the faces where that changes it: another class, or a continuous
    parameter latent moved by more than 0.5); None for a model without one."""
    card = load_card(model)
    if card.discriminator is None or not card.discriminator.c_dim:
        return None
    D = load_discriminator(model)[0].float().eval()

    def scores(c: torch.Tensor) -> torch.Tensor:  # batches of 16: whole mbstd groups
        with torch.no_grad():
            return torch.cat([D(real[i : i + batch], c[i : i + batch])
                              for i in range(0, len(c), batch)])  # fmt: skip

    g = min(D.config.mbstd_group_size, len(pz)) or len(pz)
    keep = len(pz) // g * g  # whole groups of the minibatch standard deviation
    real, pz, labels = real[:keep], pz[:keep], torch.from_numpy(true[:keep])
    own, other = scores(pz), pz.roll(1, dims=0)
    out = {"all": round(float((own > scores(other)).float().mean()), 3)}
    for k, spec in enumerate(specs):
        j = PARAM_NAMES.index(spec.name)
        one = pz.clone()
        one[:, j] = other[:, j]
        if spec.kind == "categorical":
            moved = labels[:, k] != labels.roll(1, dims=0)[:, k]
        else:
            moved = (one[:, j] - pz[:, j]).abs() > 0.5
        out[spec.name] = round(float((own > scores(one))[moved].float().mean()), 3)
    return out


def measure(model: Path, attributes: Path, n: int, batch: int = 16) -> dict:
    G, card = load_generator(model)
    G = G.float().eval()
    net, _ = load_attribute_net(attributes)
    net = net.eval()
    R = G.img_resolution
    seeds = list(range(FIRST_SEED, FIRST_SEED + n))
    gen = torch.Generator().manual_seed(0)
    real_u8, fake_u8, true, latents = [], [], [], []
    with torch.no_grad():
        for i in range(0, n, batch):
            chunk = seeds[i : i + batch]
            real_u8 += [render_face(s, R)[0] for s in chunk]
            true += [labels_vector(sample_params(s).labels()) for s in chunk]
            pz = torch.from_numpy(np.stack([param_latent(s) for s in chunk]))
            latents.append(pz.float())
            z = supervised_latents(pz, G.z_dim, generator=gen)
            img = G(z, noise_mode="const")
            fake_u8 += list(to_uint8(img))
    real = torch.from_numpy(np.stack(real_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1
    fake = torch.from_numpy(np.stack(fake_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        pred_fake = torch.cat([net.decode(net(fake[i : i + 64])) for i in range(0, n, 64)])
        pred_real = torch.cat([net.decode(net(real[i : i + 64])) for i in range(0, n, 64)])
    true_np = np.stack(true)
    l1 = float((fake - real).abs().mean() * 127.5)
    l1_small = float((F.avg_pool2d(fake, 4) - F.avg_pool2d(real, 4)).abs().mean() * 127.5)
    return {
        "model": card.id,
        "n": n,
        "first_seed": FIRST_SEED,
        "l1_255": round(l1, 2),
        "l1_quarter_255": round(l1_small, 2),
        "generated": _agreement(pred_fake.numpy(), true_np, net.config.specs),
        "real": _agreement(pred_real.numpy(), true_np, net.config.specs),
        "presence": _presence(pred_fake.numpy(), true_np, net.config.specs),
        "presence_real": _presence(pred_real.numpy(), true_np, net.config.specs),
        "d_matching": d_matching(model, real, torch.cat(latents), true_np, net.config.specs),
        "pairs": (real_u8[:8], fake_u8[:8]),
    }


def table(results: list[dict]) -> str:
    names = list(results[0]["generated"])
    head = "| attribute | " + " | ".join(r["model"] for r in results) + " | real faces |"
    lines = [head, "|---" * (len(results) + 2) + "|"]
    lines.append("| pixel error (0-255), full / quarter size | "
                 + " | ".join(f"{r['l1_255']} / {r['l1_quarter_255']}" for r in results)
                 + " | 0 |")  # fmt: skip
    for name in names:
        cells = " | ".join(str(r["generated"][name]) for r in results)
        lines.append(f"| {name} | {cells} | {results[0]['real'][name]} |")
    return "\n".join(lines)


def presence_table(results: list[dict]) -> str:
    """Glasses and beard read present where the parameters say none / some."""
    head = "| read present, where none / where some | " + " | ".join(r["model"] for r in results)
    lines = [head + " | real faces |", "|---" * (len(results) + 2) + "|"]
    for name in results[0]["presence"]:
        cells = [r["presence"][name] for r in results] + [results[0]["presence_real"][name]]
        pairs = [(c["read_present_where_none"], c["read_present_where_some"]) for c in cells]
        text = " | ".join(f"{none} / {some}" for none, some in pairs)
        lines.append(f"| {name} | {text} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--labels", nargs="+", help="column names (default: the model ids)")
    parser.add_argument("--attributes", type=Path, default=Path("models/attributes-synthfaces"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--figure", type=Path, help="real faces over generated ones, 8 seeds")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--write-docs", action="store_true", help="table into docs/training.md")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    results = [measure(m, args.attributes, args.n) for m in args.models]
    for r, label in zip(results, args.labels or [], strict=False):
        r["model"] = label
    print(f"# {machine()}", file=sys.stderr)
    print(table(results))
    print(presence_table(results))
    for r in results:
        if r["d_matching"] is not None:
            print(f"{r['model']}: D scores a real face higher with its own parameters than "
                  "with the next face's (all of them / only this one):")  # fmt: skip
            print(", ".join(f"{k} {v:.2f}" for k, v in r["d_matching"].items()))
    if args.figure:
        rows = [results[0]["pairs"][0]] + [r["pairs"][1] for r in results]
        image_grid([img for row in rows for img in row], cols=8).save(args.figure)
        print(f"wrote {args.figure}")
    if args.write_docs:
        names = ", ".join(args.labels or [f"`{m}`" for m in args.models])
        head = (
            f"Measured {datetime.date.today()} on {machine()} with `python benchmarks/"
            f"param_faces.py --n {args.n}` ({names}): {args.n} held-out seeds from "
            f"{FIRST_SEED:,}; pixel error in 0-255 steps; R² for continuous attributes, "
            "accuracy for glasses, beard and hair style; the last column is the attribute "
            "network on the real faces (its own error, the ceiling)."
        )
        write_docs("param-faces", f"{head}\n\n{table(results)}", ROOT / "docs" / "training.md")
    if args.json:
        clean = [{k: v for k, v in r.items() if k != "pairs"} for r in results]
        args.json.write_text(json.dumps({"machine": machine(), "results": clean}, indent=2))


if __name__ == "__main__":
    main()
