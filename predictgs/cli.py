"""The ``predictgs`` command. Thin: parse, call the library, write files, map errors to exit codes.

Exit codes: 0 success; 2 bad input (the message names the file, model or option, on one line);
130 interrupted. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from .errors import PredictGSError
from .train.config import RASTERIZERS

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error on one line."""

    def error(self, message):  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _add_protocol_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """Protocol options; with defaults=False unset options stay None (a config file may set them)."""
    group = parser.add_argument_group("evaluation protocol")
    group.add_argument("--resolution", choices=["hac", "3dgs", "factor"], default="hac" if defaults else None,
                       help="hac: images/ capped at --max-width (default, the HAC/Predict-GS tables); "
                            "3dgs: the --images-folder (e.g. images_4); factor: images/ divided by --downscale")
    group.add_argument("--max-width", type=_positive_int, default=1600 if defaults else None,
                       help="with --resolution hac: images wider than this are downscaled to it (default 1600)")
    group.add_argument("--images-folder", help="image folder for --resolution 3dgs, e.g. images_4")
    group.add_argument("--downscale", type=float, default=1.0 if defaults else None,
                       help="factor for --resolution factor (default 1)")
    group.add_argument("--llffhold", type=int, default=8 if defaults else None,
                       help="every N-th image (sorted by name) is a test view; at least 2 (default 8)")
    group.add_argument("--white-background", action=argparse.BooleanOptionalAction, default=None,
                       help="default: white for Blender scenes, black otherwise")


def _protocol_from_args(args):
    from .data import Protocol

    return Protocol.from_dict(dict(
        llffhold=args.llffhold, resolution=args.resolution, max_width=args.max_width,
        images_folder=args.images_folder, downscale=args.downscale, white_background=args.white_background,
    ))


def cmd_scene_info(args) -> int:
    from .data import load_scene

    scene = load_scene(Path(args.path), _protocol_from_args(args))
    print(json.dumps(scene.summary(), indent=2))
    return 0


def cmd_synth(args) -> int:
    from .data.synth import generate_scene
    from .guard import check_scene_output, write_marker
    from .io import check_output_dir

    check_output_dir(Path(args.out), "--out")
    check_scene_output(Path(args.out))
    summary = generate_scene(args.family, args.seed, Path(args.out), width=args.width, height=args.height,
                             num_views=args.views, progress=not args.quiet)
    write_marker(Path(args.out), "scene")
    print(json.dumps(summary, indent=2))
    return 0


TRAIN_SUMMARY = ("method", "scene", "lmbda", "iterations", "psnr", "ssim", "lpips", "num_anchors", "num_gaussians",
                 "estimated_size_bytes", "train_seconds", "size_bytes")


def cmd_train(args) -> int:
    from .pipeline.train import run_training

    protocol = _protocol_overrides(args)
    metrics = run_training(
        args.method, Path(args.scene), Path(args.out), lmbda=args.lmbda, iterations=args.iterations,
        config_file=Path(args.config) if args.config else None, protocol=protocol, benchmark=args.benchmark,
        seed=args.seed, device=args.device, rasterizer=args.rasterizer, restart=args.restart,
        progress=not args.quiet, notify=lambda line: print(f"predictgs train: {line}", file=sys.stderr),
        preset=args.preset, tensorboard=args.tensorboard, tensorboard_images=args.tensorboard_images,
    )
    print(json.dumps({k: metrics[k] for k in TRAIN_SUMMARY if k in metrics}, indent=2))
    return 0


def cmd_presets(args) -> int:
    from .presets import PRESETS

    rows = [preset.summary() for preset in PRESETS.values()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(f"{row['preset']}: {row['for']}")
        for key, value in row.items():
            if key not in ("preset", "for"):
                print(f"  {key:<20} {value}")
    return 0


def cmd_export(args) -> int:
    from .export import export

    summary = export(Path(args.source), Path(args.out), fmt=args.format, view=args.view,
                     scene=Path(args.scene) if args.scene else None)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_render(args) -> int:
    from .render_video import render_trajectory

    summary = render_trajectory(Path(args.source), Path(args.out), trajectory=args.trajectory, frames=args.frames,
                                fps=args.fps, scene=Path(args.scene) if args.scene else None, device=args.device,
                                rasterizer=args.rasterizer, progress=_progress(args))
    print(json.dumps(summary, indent=2))
    return 0


def _add_progress_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--progress", action="store_true", help="a progress bar on stderr even when it is not a terminal")
    group.add_argument("--quiet", action="store_true", help="no progress bar (default: one when stderr is a terminal)")


def _progress(args) -> bool:
    """A progress bar on stderr: asked for, or stderr is a terminal and not --quiet."""
    return bool(getattr(args, "progress", False)) or (not getattr(args, "quiet", False) and sys.stderr.isatty())


def cmd_encode(args) -> int:
    from .pipeline.codec import encode_run

    entries = encode_run(Path(args.run_dir), Path(args.output), evaluate=not args.no_eval, device=args.device,
                         chunk_anchors=args.chunk_anchors, mlp_precision=args.mlp_precision,
                         progress=_progress(args))
    keys = ("size_bytes", "section_bytes", "encode_seconds", "decode_seconds", "coding_gap_percent", "psnr",
            "prequant_psnr", "ssim", "lpips")
    print(json.dumps({k: entries[k] for k in keys if k in entries}, indent=2))
    return 0


def cmd_decode(args) -> int:
    from .pipeline.codec import decode_file

    print(json.dumps(decode_file(Path(args.file), args.output, progress=_progress(args), device=args.device),
                     indent=2))
    return 0


def cmd_eval(args) -> int:
    from .pipeline.codec import evaluate_decoded

    metrics = evaluate_decoded(Path(args.decoded_dir), Path(args.scene), protocol=_protocol_overrides(args),
                               device=args.device, lpips=not args.no_lpips, rasterizer=args.rasterizer,
                               fps_seconds=args.fps_seconds,
                               save_renders=Path(args.save_renders) if args.save_renders else None,
                               progress=_progress(args))
    keys = ("method", "psnr", "ssim", "lpips", "num_anchors", "num_gaussians", "fps", "device", "rasterizer")
    print(json.dumps({k: metrics[k] for k in keys}, indent=2))
    return 0


def _protocol_overrides(args) -> dict:
    """Only the protocol options given on the command line (the config file may set the others)."""
    given = {}
    for key in ("resolution", "max_width", "images_folder", "downscale", "llffhold", "white_background"):
        value = getattr(args, key)
        if value is not None:
            given[key] = value
    return given


def _method_defaults() -> str:
    """Each registered method with its default rate point, for --help."""
    from .methods import registry

    parts = [f"{name} {cls.default_lmbda:g}" for name, cls in sorted(registry().items())
             if cls.default_lmbda is not None]
    return ", ".join(parts)


def _method_labels() -> str:
    """The registered methods with their table names, for the help texts."""
    from .methods import registry

    return ", ".join(f"{name} ({cls.label})" if cls.label != name else name for name, cls in sorted(registry().items()))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("predictgs")
    except PackageNotFoundError:
        return "(not installed)"


def _method_names() -> str:
    from .methods import registry

    return ", ".join(sorted(registry()))


def _preset_names() -> list[str]:
    from .presets import PRESETS

    return list(PRESETS)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2^63), got {value}")
    return value


def _device(text: str) -> str:
    from .config import check_device
    from .errors import ConfigError

    try:
        return check_device(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[-1]) from None


def _chunk_anchors(text: str) -> int:
    from .entropy.anchor import MAX_CHUNK_ANCHORS

    value = _positive_int(text)
    if value > MAX_CHUNK_ANCHORS:
        raise argparse.ArgumentTypeError(f"at most {MAX_CHUNK_ANCHORS} (the decoder's limit), got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="predictgs", description="Benchmark and reproduction harness for 3D Gaussian Splatting "
                                                   f"compression. Methods: {_method_labels()}.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("scene-info", help="print a JSON summary of a scene (format, cameras, split, size, points)",
                       description="Detect a scene's layout (COLMAP, LLFF, Blender, instant-ngp), apply the "
                                   "evaluation protocol and print a JSON summary.")
    p.add_argument("path", help="scene folder")
    _add_protocol_options(p)
    p.set_defaults(func=cmd_scene_info)

    p = sub.add_parser("synth", help="write a procedural scene of the embedded benchmark",
                       description="Write a deterministic procedural scene (COLMAP text model + images/) "
                                   "rendered by an analytic ray caster.")
    p.add_argument("--family", required=True, choices=["outdoor", "indoor", "object"],
                   help="outdoor ~ Mip-NeRF360, indoor ~ Deep Blending, object ~ Tanks&Temples")
    p.add_argument("--seed", type=_seed, default=0, help="random seed, 0 <= seed < 2^63 (default 0)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--width", type=_positive_int, default=160, help="image width in pixels (default 160)")
    p.add_argument("--height", type=_positive_int, default=120, help="image height in pixels (default 120)")
    p.add_argument("--views", type=_positive_int, default=40,
                   help="number of images (default 40; every 8th is a test view)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a method on a scene and write a run directory",
                       description=f"Train a method ({_method_labels()}) on a scene. RUN_DIR receives "
                                   "config.yaml, train.log, train_log.csv, checkpoint.pt, metrics.json and "
                                   "per_view.json. An interrupted run resumes from its last checkpoint when started "
                                   "again; a finished one is left as it is (--restart trains it again).")
    p.add_argument("--method", required=True, help=f"one of: {_method_names()}")
    p.add_argument("--scene", required=True, help="scene folder (COLMAP, LLFF, Blender, instant-ngp)")
    p.add_argument("-o", "--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--lmbda", type=_positive_float,
                   help=f"rate-distortion weight of methods with an entropy model; defaults: {_method_defaults()}")
    p.add_argument("--iterations", type=_positive_int,
                   help="training iterations (default 30000, the papers'; on a CPU try a few hundred with "
                        "--preset embedded on a small scene)")
    p.add_argument("--config", metavar="FILE", help="YAML with sections train:, model:, model_by_method:, protocol:, "
                                                   "benchmark:, preset: (a workflow train_config block as it is)")
    p.add_argument("--preset", choices=_preset_names(),
                   help="the dataset's settings (voxel size, growth threshold, HAC++ mask learning rates, "
                        "resolution protocol, background; `predictgs presets` lists them); default: the "
                        "preset named like --benchmark, else the methods' reference values")
    p.add_argument("--benchmark", help="benchmark name recorded in metrics.json (default: the preset's name); "
                                       "a preset's name (e.g. mipnerf360) also selects that preset")
    p.add_argument("--seed", type=_seed, help="random seed, 0 <= seed < 2^63 (default 0)")
    p.add_argument("--device", type=_device, help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--rasterizer", choices=RASTERIZERS,
                   help="auto (default): gsplat on CUDA (an error if it cannot be loaded), the compiled CPU "
                        "rasterizer elsewhere (the pure-PyTorch reference, with a warning, if it cannot be built)")
    p.add_argument("--restart", action="store_true", help="discard an existing run in RUN_DIR")
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to RUN_DIR/tensorboard/ (the scalars of train_log.csv and a test view; needs "
                        "pip install 'predictgs[tensorboard]')")
    p.add_argument("--tensorboard-images", type=_positive_int, metavar="N",
                   help="with --tensorboard: render the first test view every N iterations (default: 10 per run)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_protocol_options(p, defaults=False)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("encode", help="write a run's model as a .pgs bitstream and record its size",
                       description="Encode the trained model of RUN_DIR into one file (format: docs/bitstream.md), "
                                   "decode it again and evaluate the decoded model on the run's scene. Adds "
                                   "size_bytes, section_bytes, encode_seconds, decode_seconds, coded_bits, "
                                   "coding_gap_percent and the decoded model's psnr/ssim/lpips to "
                                   "RUN_DIR/metrics.json (the pre-encode values are kept as prequant_*).")
    p.add_argument("run_dir", metavar="RUN_DIR", help="run directory written by `predictgs train`")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, metavar="FILE",
                   help="bitstream to write, e.g. scene.pgs")
    p.add_argument("--chunk-anchors", type=_chunk_anchors,
                   help="anchors per context evaluation (stored in the file; default 3000, HAC's; at most 65536)")
    p.add_argument("--mlp-precision", choices=("fp32", "fp16"), default="fp32",
                   help="storage of the network weights (default fp32, as HAC counts them); fp16 halves "
                        "that section and changed test PSNR by at most 0.0014 dB on the embedded benchmark")
    p.add_argument("--no-eval", action="store_true", help="skip evaluating the decoded model")
    p.add_argument("--device", type=_device, help="device for evaluating the decoded model (default: the run's)")
    _add_progress_options(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode a .pgs bitstream into a model directory",
                       description="Decode FILE into DECODED_DIR (model.pt + config.yaml), which "
                                   "`predictgs eval` evaluates. DECODED_DIR must be absent, empty or a decoded "
                                   "model folder, which is replaced whole (its previous evaluation goes with it). "
                                   "A corrupt or foreign file is refused with one line naming the damaged section.")
    p.add_argument("file", metavar="FILE", help=".pgs bitstream written by `predictgs encode`")
    p.add_argument("-o", "--out", "--output", dest="output", required=True, metavar="DECODED_DIR",
                   help="directory to write")
    p.add_argument("--device", type=_device, default="auto",
                   help="where the coding networks run (default auto: CUDA when available, else the CPU; the "
                        "arithmetic coder always runs on the CPU)")
    _add_progress_options(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("eval", help="evaluate a decoded model on a scene",
                       description="Render the test views of SCENE with a decoded model and write "
                                   "DECODED_DIR/metrics.json (psnr, ssim, lpips, lpips_alex, num_anchors, fps "
                                   "at test resolution on the device used, device) and per_view.json. The "
                                   "evaluation protocol is the encoded run's unless overridden.")
    p.add_argument("decoded_dir", metavar="DECODED_DIR", help="directory written by `predictgs decode`")
    p.add_argument("--scene", required=True, help="scene folder")
    p.add_argument("--device", type=_device, default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--rasterizer", choices=RASTERIZERS, default="auto",
                   help="auto (default): gsplat on CUDA, the compiled CPU rasterizer elsewhere (the pure-PyTorch "
                        "reference if it cannot be built)")
    p.add_argument("--fps-seconds", type=_positive_float, default=3.0,
                   help="time spent measuring FPS (median frame time over at least this long; default 3)")
    p.add_argument("--no-lpips", action="store_true", help="PSNR and SSIM only")
    p.add_argument("--save-renders", metavar="DIR",
                   help="write each test view's render, ground truth and error map (PNG) to DIR")
    _add_progress_options(p)
    _add_protocol_options(p, defaults=False)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="write a run's or decoded model's Gaussians as PLY / .splat for viewers",
                       description="Write the Gaussians of RUN_OR_DECODED (a run folder or a decoded model "
                                   "folder) to a file Gaussian-splatting viewers open (SuperSplat, gsplat's "
                                   "viewer, nerfstudio, antimatter15's splat viewer): 3DGS's PLY, .splat, or "
                                   "PlayCanvas's compressed PLY. 3DGS exports its Gaussians. The anchor methods "
                                   "(Scaffold-GS, HAC, HAC++, Predict-GS) are view-dependent: their networks spawn "
                                   "Gaussians per camera, so the file holds the Gaussians spawned for one test "
                                   "view (--view), exact from that camera, an approximation elsewhere.")
    p.add_argument("source", metavar="RUN_OR_DECODED", help="run folder (predictgs train) or decoded model folder "
                                                            "(predictgs decode)")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, metavar="FILE",
                   help="file to write (.ply, .splat, .compressed.ply)")
    p.add_argument("--format", choices=("ply", "splat", "ply_compressed"),
                   help="default: from FILE's name (.splat, .compressed.ply, else ply)")
    p.add_argument("--view", type=int, default=0, metavar="N",
                   help="anchor methods: the test view whose Gaussians are written (default 0, the first)")
    p.add_argument("--scene", help="the scene folder (needed for a decoded anchor model; a run knows its scene)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("render", help="render a run or decoded model along the test cameras or a spiral into a video",
                       description="Render RUN_OR_DECODED (a run folder or a decoded model folder) along a "
                                   "camera trajectory into a video (needs pip install 'predictgs[video]': imageio "
                                   "and imageio-ffmpeg): the scene's test cameras in order, or a spiral circling "
                                   "the scene once around the point the cameras look at.")
    p.add_argument("source", metavar="RUN_OR_DECODED", help="run folder or decoded model folder")
    p.add_argument("-o", "--out", "--output", dest="out", required=True, metavar="FILE",
                   help="video to write, e.g. video.mp4")
    p.add_argument("--trajectory", choices=("test", "spiral"), default="spiral",
                   help="test: the test cameras; spiral (default): a loop around the scene")
    p.add_argument("--frames", type=_positive_int, default=120, help="frames of the spiral (default 120)")
    p.add_argument("--fps", type=_positive_float, default=30.0, help="frames per second (default 30)")
    p.add_argument("--scene", help="the scene folder (needed for a decoded model; a run knows its scene)")
    p.add_argument("--device", type=_device, default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--rasterizer", choices=("auto", "gsplat", "reference"), default="auto",
                   help="auto (default): gsplat on CUDA, the reference rasterizer elsewhere")
    _add_progress_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("presets", help="list the per-dataset presets of `predictgs train --preset`",
                       description="List the presets of `predictgs train --preset NAME`: per dataset, the voxel "
                                   "size, growth settings, HAC++'s mask learning rate, hash-table sizes, the "
                                   "resolution protocol and the background (the workflow uses the same).")
    p.add_argument("--json", action="store_true", help="as JSON")
    p.set_defaults(func=cmd_presets)
    return parser


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"predictgs: warning: {message}\n"


def _os_error_line(err: OSError) -> str:
    """One line for an OSError: the path(s) concerned and the system's reason."""
    reason = err.strerror or str(err) or type(err).__name__
    paths = [str(name) for name in (err.filename, err.filename2) if name is not None]
    line = f"{' -> '.join(paths)}: {reason}" if paths else reason
    return " ".join(line.split())


def main(argv=None) -> int:
    warnings.formatwarning = _one_line_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    from .guard import set_command

    set_command(sys.argv[1:] if argv is None else argv)
    try:
        return args.func(args)
    except PredictGSError as err:
        print(f"predictgs {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as err:  # missing, unreadable or unwritable paths, full disks, ... (the whole family)
        print(f"predictgs {args.command}: error: {_os_error_line(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"predictgs {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
