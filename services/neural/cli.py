"""``drape models``: manifests, verification, ONNX export and TensorRT engines of the model
repository (``DRAPE_MODEL_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from services.common.config import load_settings


def _model(settings, text: str):
    """Open ``name/version`` with the kind its manifest declares (hashes verified)."""
    from services.neural.repository import MANIFEST, ModelRef, ModelRepositoryError, open_model

    ref = ModelRef.parse(text, "MODEL")
    manifest = Path(settings.model_dir) / ref.name / ref.version / MANIFEST
    try:
        kind = json.loads(manifest.read_text()).get("kind", "")
    except (OSError, ValueError) as exc:
        raise ModelRepositoryError(manifest, f"cannot read {manifest}: {exc}") from None
    return open_model(settings.model_dir, ref, kind, ())


def _cmd_manifest(args) -> int:
    from services.neural.repository import write_manifest

    path = write_manifest(args.dir, args.name, args.version, args.kind)
    n = len(json.loads(path.read_text())["files"])
    print(f"{path}: {n} files")
    return 0


def _cmd_verify(args) -> int:
    from services.neural.repository import MANIFEST

    settings = load_settings()
    refs = args.models or sorted(
        f"{p.parent.parent.name}/{p.parent.name}"
        for p in Path(settings.model_dir).glob(f"*/*/{MANIFEST}")
    )
    if not refs:
        print(f"no models under {settings.model_dir}")
        return 1
    for ref in refs:
        model = _model(settings, ref)
        print(f"{ref}: {model.kind}, {len(model.files)} files, sha256 OK")
    return 0


def _cmd_export(args) -> int:
    import torch

    from services.neural import catvton, export, garment_sam, sam

    settings = load_settings()
    model = _model(settings, args.model)
    dtype = {"float32": torch.float32, "float16": torch.float16}[args.dtype]
    device = torch.device("cuda" if dtype == torch.float16 else "cpu")
    if model.kind == catvton.KIND:
        net = catvton.load(model, device, dtype)
        files = export.export_catvton(model.path, net, args.height, args.width)
    elif model.kind == sam.KIND:
        from services.neural.repository import add_to_manifest

        s = sam.load_sam(model.path)
        cfg = s.config
        emb = torch.randn(1, cfg.prompt_dim, cfg.embed_size, cfg.embed_size)
        coords, labels = sam.prompt_arrays([[1, 2], [3, 4]], [1, 0], None, 1.0)
        files = export.export(sam.SamDecoder(s), (emb, coords, labels),
                              model.path / garment_sam.ONNX_DECODER, export.SAM_DECODER)  # fmt: skip
        add_to_manifest(model.path, [p.relative_to(model.path).as_posix() for p in files])
    else:
        print(f"{args.model}: no exportable graphs for kind {model.kind!r}")
        return 1
    for f in files:
        print(f"{f} ({f.stat().st_size / 2**20:.1f} MiB)")
    return 0


def _cmd_build_engine(args) -> int:
    from services.neural import catvton
    from services.neural import tensorrt as T

    settings = load_settings()
    model = _model(settings, args.model)
    if model.kind != catvton.KIND:
        print(f"{args.model}: engines are built for {catvton.KIND} models")
        return 1
    profiles = T.catvton_profiles(settings.tryon_diffusion_height, settings.tryon_diffusion_width)
    for graph, shapes in profiles.items():
        out = T.build_engine(model.path / "onnx" / f"{graph}.onnx", shapes, args.precision)
        print(out)
    return 0


def _cmd_random(args) -> int:
    from services.neural import configs

    settings = load_settings()
    write = {"catvton": configs.write_catvton_repository,
             "sd-inpainting": configs.write_sd_inpainting_repository}[args.kind]  # fmt: skip
    path = write(settings.model_dir, tiny=not args.full_size)
    print(f"{path}: random weights (for trying the serving path; the pictures are noise)")
    return 0


def add_commands(sub) -> None:
    """Add ``drape models ...`` to the ``drape`` parser."""
    p = sub.add_parser("models", help="model repository: manifest, verify, export, build-engine")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)

    m = msub.add_parser("manifest", help="write DIR/manifest.json (SHA-256 of every file)")
    m.add_argument("dir", help="model directory, DRAPE_MODEL_DIR/<name>/<version>")
    m.add_argument("--name", required=True)
    m.add_argument("--version", required=True)
    m.add_argument("--kind", required=True,
                   help="tryon-catvton, refiner-sd-inpainting, garment-sam, animate-anyone")  # fmt: skip
    m.set_defaults(func=_cmd_manifest)

    m = msub.add_parser("verify", help="check files and checksums against the manifests")
    m.add_argument("models", nargs="*", help="name/version (default: every model)")
    m.set_defaults(func=_cmd_verify)

    m = msub.add_parser("export", help="export a model's networks to ONNX (DIR/onnx/)")
    m.add_argument("model", help="name/version")
    m.add_argument("--height", type=int, default=1024, help="example working height")
    m.add_argument("--width", type=int, default=768, help="example working width")
    m.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="float16 needs CUDA; TensorRT 11 builds fp16 engines only from these")  # fmt: skip
    m.set_defaults(func=_cmd_export)

    m = msub.add_parser("build-engine", help="build TensorRT engines from the ONNX graphs")
    m.add_argument("model", help="name/version")
    m.add_argument("--precision", choices=["fp32", "fp16", "bf16"], default="fp16")
    m.set_defaults(func=_cmd_build_engine)

    m = msub.add_parser("random-weights", help="write a random-weight model (serving tests)")
    m.add_argument("kind", choices=["catvton", "sd-inpainting"])
    m.add_argument("--full-size", action="store_true", help="real SD1.5 sizes (GBs)")
    m.set_defaults(func=_cmd_random)
