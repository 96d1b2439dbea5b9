"""``ladseg info``: parameters and cost of a model, or the list of registered models."""

from __future__ import annotations

import argparse

from ladseg.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "info",
        help="print parameters and GFLOPs of a model",
        description="Print a model's parameter count and cost (GMACs and GFLOPs = 2 x GMACs) "
        "for one inference forward, or list registered models and backbones.",
    )
    p.add_argument("model", nargs="?", help="model name, e.g. deeplabv3, pspnet (see --list)")
    p.add_argument("--backbone", default="resnet18", help="backbone name (default: resnet18)")
    p.add_argument("--num-classes", type=int, default=21, help="number of classes (default: 21)")
    p.add_argument("--in-channels", type=int, default=3, help="input channels; 3 + k for a LAD teacher")
    p.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"), help="input size")
    p.add_argument("--output-stride", type=int, default=8, help="backbone output stride (8, 16, 32)")
    p.add_argument("--no-aux", action="store_true", help="leave out the auxiliary head")
    p.add_argument("--list", action="store_true", help="list registered models, backbones and heads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ladseg.models import BACKBONES, HEADS, MODELS, build_model, list_models
    from ladseg.models.complexity import count_flops, count_parameters

    if args.list:
        print("models:    " + ", ".join(MODELS.names()))
        print("backbones: " + ", ".join(BACKBONES.names()))
        print("heads:     " + ", ".join(HEADS.names()))
        print("pairs:")
        for name, backbone in list_models():
            print(f"  {name} --backbone {backbone}")
        return 0
    if not args.model:
        raise ConfigError("give a model name (e.g. 'ladseg info deeplabv3 --backbone resnet18') or --list")
    model = build_model(
        args.model,
        args.backbone,
        args.num_classes,
        in_channels=args.in_channels,
        aux=not args.no_aux,
        output_stride=args.output_stride,
    )
    h, w = args.size
    params = count_parameters(model)
    aux = count_parameters(model.aux_head) if model.aux_head is not None else 0
    flops = count_flops(model, (1, args.in_channels, h, w))
    print(
        f"model:      {args.model} / {args.backbone}, {args.num_classes} classes, {args.in_channels} input channels"
    )
    print(f"parameters: {params:,} ({params / 1e6:.2f} M; aux head {aux:,}, training only)")
    print(f"input:      1 x {args.in_channels} x {h} x {w}, output stride {args.output_stride}")
    print(f"GMACs:      {flops / 2e9:.2f} (multiply-accumulates; most papers call these 'GFLOPs')")
    print(f"GFLOPs:     {flops / 1e9:.2f} (2 x MACs; inference, conv/linear only)")
    return 0
