"""``stylelens directions compute|import|list|delete|sheet|measure``: argparse wiring only; the
work is in the other ``stylelens.directions`` modules."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from stylelens.cli_args import Commands, add_device
from stylelens.directions.core import Direction, DirectionError
from stylelens.settings import Settings

DIR_SPEC = re.compile(r"^([a-z0-9][a-z0-9_.-]*)=([+-]?(?:\d+(?:\.\d*)?|\.\d+))$")


def _common(p: argparse.ArgumentParser, settings: Settings) -> None:
    p.add_argument(
        "--model", default=settings.default_model, help="model id (default: %(default)s)"
    )
    p.add_argument(
        "--models-dir",
        type=Path,
        default=settings.models_dir,
        help="one folder per model (default: %(default)s)",
    )
    add_device(p, settings)


def register(commands: Commands, settings: Settings) -> None:
    """``directions`` and its actions (``stylelens edit`` is in ``stylelens.editing.cli``)."""
    top = commands.add(
        "directions",
        "models",
        help="semantic directions: compute, import, list, delete, sheet, measure",
    )
    sub = top.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_compute(sub, settings)
    _add_store_actions(sub, settings)
    _add_sheet(sub, settings)
    _add_measure(sub, settings)


def _add_compute(sub: Any, settings: Settings) -> None:
    p = sub.add_parser(
        "compute", help="compute directions from the model (SeFa, GANSpace, InterFaceGAN)"
    )
    _common(p, settings)
    p.add_argument("--method", required=True, choices=["sefa", "ganspace", "interfacegan"])
    p.add_argument(
        "--layers", default="all", help="coarse, middle, fine, all or ws indices (sefa, ganspace)"
    )
    p.add_argument("--top", type=int, default=10, help="components (sefa, ganspace; default 10)")
    p.add_argument(
        "--attributes", default=None, help="interfacegan: comma-separated attributes (default: all)"
    )
    p.add_argument(
        "--n",
        type=int,
        default=None,
        help="samples (interfacegan default 3000 labelled faces, ganspace 10000 w)",
    )
    p.add_argument(
        "--no-tune",
        action="store_true",
        help="interfacegan: skip choosing layers / conditioning / step by measurement",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="interfacegan: cache of the labelled samples (read if it matches, else written)",
    )
    p.add_argument(
        "--tune-faces",
        type=int,
        default=48,
        help="interfacegan: faces per tuning measurement (default: %(default)s)",
    )
    p.add_argument(
        "--gradient-faces",
        type=int,
        default=512,
        help="interfacegan: faces whose mean attribute gradients give the 'gradients' "
        "candidates; 0 skips them (default: %(default)s)",
    )
    p.add_argument(
        "--attribute-model",
        default="attributes-synthfaces",
        help="attribute network id (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=["float32", "bfloat16"],
        default="bfloat16",
        help="rendering of labelled faces (default: %(default)s)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace directions of the same name")
    p.set_defaults(func=cmd_compute)


def _add_store_actions(sub: Any, settings: Settings) -> None:
    p = sub.add_parser("import", help="import an InterFaceGAN .npy or PyTorch .pt direction")
    p.add_argument("file", type=Path)
    _common(p, settings)
    p.add_argument("--name", required=True, help="direction name, e.g. smile")
    p.add_argument("--layers", default="all", help="layer range it acts on (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace a direction of that name")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("list", help="list a model's directions")
    _common(p, settings)
    p.add_argument("--json", action="store_true", help="one JSON object per direction")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("delete", help="delete a stored direction")
    p.add_argument("name")
    _common(p, settings)
    p.set_defaults(func=cmd_delete)


def _add_sheet(sub: Any, settings: Settings) -> None:
    p = sub.add_parser("sheet", help="grid image: rows = directions, columns = amounts")
    _common(p, settings)
    p.add_argument("--out", type=Path, required=True, help="image file, e.g. sheet.png")
    p.add_argument(
        "--names", default=None, help="comma-separated directions (default: the InterFaceGAN ones)"
    )
    p.add_argument("--seeds", default="0-2", help="seeds (default: %(default)s)")
    p.add_argument(
        "--steps",
        default="-2,-1,0,1,2",
        help="columns, in default steps of each direction (default: %(default)s)",
    )
    p.add_argument("--trunc", type=float, default=0.7, help="truncation psi (default: 0.7)")
    p.add_argument("--tile", type=int, default=128, help="tile size in px (default: 128)")
    p.set_defaults(func=cmd_sheet)


def _add_measure(sub: Any, settings: Settings) -> None:
    p = sub.add_parser("measure", help="attribute changes of every direction (docs/directions.md)")
    _common(p, settings)
    p.add_argument("--attribute-model", default="attributes-synthfaces")
    p.add_argument("--faces", type=int, default=200, help="faces measured (default: 200)")
    p.add_argument(
        "--faces-from",
        choices=("sampled", "encoder"),
        default="sampled",
        help="sampled: z seeds from 2,000,000; encoder: held-out SynthFaces encoded by the "
        "model's encoder, as uploads start (default: %(default)s)",
    )
    p.add_argument("--json", type=Path, default=None, help="write the full report as JSON")
    p.add_argument(
        "--docs", type=Path, default=None, help="fill the quality section of this markdown file"
    )
    p.set_defaults(func=cmd_measure)


def _device(name: str) -> Any:
    from stylelens.networks.runtime import resolve_device

    try:
        return resolve_device(name)
    except ValueError as exc:
        raise DirectionError(str(exc)) from exc


def _load_model(args: argparse.Namespace) -> tuple[Any, Path]:
    from stylelens.checkpoints import load_generator, model_dir_for

    model_dir = model_dir_for(args.models_dir, args.model)
    G, _ = load_generator(model_dir, device=_device(args.device))
    return G, model_dir


def _load_attribute_net(args: argparse.Namespace) -> tuple[Any, Any]:
    from stylelens.checkpoints.attribute_net import load_attribute_net

    net, card = load_attribute_net(args.models_dir / args.attribute_model)
    return net.to(_device(args.device)), card


def cmd_compute(args: argparse.Namespace) -> None:
    from stylelens.directions.compute import (
        InterFaceGANConfig,
        compute_ganspace,
        compute_interfacegan,
        compute_sefa,
    )
    from stylelens.directions.core import layer_indices
    from stylelens.directions.store import save_directions

    if (
        args.top < 1
        or (args.n is not None and args.n < 10)
        or args.tune_faces < 2
        or args.gradient_faces < 0
    ):
        raise DirectionError(
            "need --top >= 1, --n >= 10, --tune-faces >= 2 and --gradient-faces >= 0"
        )
    G, model_dir = _load_model(args)
    layer_indices(args.layers, G.num_ws)
    if args.top > G.w_dim:
        raise DirectionError(f"--top must be at most w_dim={G.w_dim}")
    t0 = time.perf_counter()
    if args.method == "sefa":
        directions = compute_sefa(G, layers=args.layers, top=args.top)
    elif args.method == "ganspace":
        directions = compute_ganspace(G, layers=args.layers, top=args.top, n=args.n or 10_000)
    else:
        net, _ = _load_attribute_net(args)
        attrs = args.attributes.split(",") if args.attributes else None
        config = InterFaceGANConfig(
            n=args.n or 3000,
            tune=not args.no_tune,
            tune_faces=args.tune_faces,
            gradient_faces=args.gradient_faces,
            precision=args.precision,
        )
        try:
            directions = compute_interfacegan(
                G,
                net,
                attributes=attrs,
                config=config,
                log=lambda s: print(s, file=sys.stderr),
                labels_file=args.labels,
            )
        except ValueError as exc:
            raise DirectionError(str(exc)) from exc
    save_directions(model_dir, directions, overwrite=args.overwrite)
    took = time.perf_counter() - t0
    print(
        f"wrote {len(directions)} {args.method} directions to {model_dir / 'directions'} "
        f"in {took:.1f} s"
    )
    for d in directions:
        print(f"  {_summary(d)}")


def _summary(d: Direction) -> str:
    extra = d.provenance.get("held_out") or d.provenance.get("source", "")
    return (
        f"{d.name:<20} {d.method:<12} layers={d.layers:<14} shape={list(d.vector.shape)} "
        f"step={d.step:g} slider={d.slider[0]:g}..{d.slider[1]:g} {extra}"
    )


def cmd_import(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import load_card, model_dir_for
    from stylelens.directions.store import read_vector_file, save_directions

    model_dir = model_dir_for(args.models_dir, args.model)
    card = load_card(model_dir)
    w_dim, num_ws = card.generator.w_dim, card.generator.num_ws
    vector = read_vector_file(args.file, num_ws=num_ws, w_dim=w_dim)
    d = Direction(
        name=args.name,
        vector=vector,
        layers=args.layers,
        method="imported",
        provenance={"source": args.file.name, "shape": list(vector.shape)},
    )
    d.check_fits(num_ws=num_ws, w_dim=w_dim)
    save_directions(model_dir, [d], overwrite=args.overwrite)
    print(f"imported {args.file} as {args.name!r} ({list(vector.shape)}) into {model_dir.name}")


def cmd_list(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import model_dir_for
    from stylelens.directions.store import load_directions

    directions = load_directions(model_dir_for(args.models_dir, args.model))
    if not directions:
        print(f"model {args.model} has no directions (stylelens directions compute ...)")
    for d in directions:
        if args.json:
            print(
                json.dumps(
                    {
                        "name": d.name,
                        "method": d.method,
                        "layers": d.layers,
                        "shape": list(d.vector.shape),
                        "unit": d.unit,
                        "step": d.step,
                        "slider": list(d.slider),
                        "provenance": d.provenance,
                    }
                )
            )
        else:
            print(_summary(d))


def cmd_delete(args: argparse.Namespace) -> None:
    from stylelens.checkpoints import model_dir_for
    from stylelens.directions.store import delete_direction

    delete_direction(model_dir_for(args.models_dir, args.model), args.name)
    print(f"deleted {args.name}")


def _parse_floats(spec: str, what: str) -> list[float]:
    try:
        return [float(x) for x in spec.split(",")]
    except ValueError:
        raise DirectionError(f"{what} {spec!r}: use comma-separated numbers") from None


def cmd_sheet(args: argparse.Namespace) -> None:
    from stylelens.directions.sheet import render_sheet
    from stylelens.directions.store import list_directions, load_direction
    from stylelens.render import parse_seeds

    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as exc:
        raise DirectionError(str(exc)) from exc
    steps = _parse_floats(args.steps, "--steps")
    if not 1 <= len(seeds) <= 16 or args.tile < 16:
        raise DirectionError("use 1-16 seeds and --tile >= 16")
    G, model_dir = _load_model(args)
    names = args.names.split(",") if args.names else None
    directions = [load_direction(model_dir, n) for n in (names or list_directions(model_dir))]
    if names is None:
        directions = [d for d in directions if d.method == "interfacegan"] or directions
    if not directions:
        raise DirectionError(f"model {args.model} has no directions; compute some first")
    for d in directions:
        d.check_fits(num_ws=G.num_ws, w_dim=G.w_dim)
    image = render_sheet(
        G, directions, seeds=seeds, steps=steps, truncation_psi=args.trunc, tile=args.tile
    )
    _save_image(image, args.out)
    print(
        f"wrote {args.out} ({len(directions)} directions x {len(steps)} steps x {len(seeds)} seeds)"
    )


def _save_image(image: Any, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    except (OSError, ValueError) as exc:
        raise DirectionError(f"cannot write {path}: {exc}") from exc


def cmd_measure(args: argparse.Namespace) -> None:
    from stylelens.directions.report import quality_report, to_markdown, write_doc_section
    from stylelens.directions.store import load_directions

    if args.faces < 2:
        raise DirectionError("--faces must be at least 2")
    G, model_dir = _load_model(args)
    net, card = _load_attribute_net(args)
    directions = load_directions(model_dir)
    if not directions:
        raise DirectionError(f"model {args.model} has no directions; compute some first")
    t0 = time.perf_counter()
    ws, source = None, None
    if args.faces_from == "encoder":
        ws, source = _encoded_faces(args, G, model_dir)
    report = quality_report(
        G, net, card.metrics, directions, faces=args.faces, ws=ws, source=source
    )
    report["seconds"] = round(time.perf_counter() - t0, 1)
    markdown = to_markdown(report)
    print(markdown)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.docs is not None:
        try:
            write_doc_section(args.docs, markdown)
        except (OSError, ValueError) as exc:
            raise DirectionError(str(exc)) from exc
        print(f"updated {args.docs}")


def _encoded_faces(args: argparse.Namespace, G: Any, model_dir: Path) -> tuple[Any, str]:
    """``--faces`` held-out SynthFaces through the model's encoder, and their description."""
    from stylelens.encoders.store import load_encoder
    from stylelens.evaluation.encoded import ENCODED_FIRST_SEED, encode_synthfaces

    encoder = load_encoder(model_dir, device=next(G.parameters()).device)
    if encoder is None:
        raise DirectionError(
            f"model {args.model} has no encoder; --faces-from encoder needs one "
            "(stylelens train-encoder or convert-encoder)"
        )
    ws = encode_synthfaces(encoder, args.faces, G.img_resolution).to(G.mapping.w_avg.device)
    return ws, (
        f"{args.faces} held-out SynthFaces (seeds from {ENCODED_FIRST_SEED:,}) encoded by the "
        "model's encoder, one pass each"
    )
