"""Command line: parse arguments, find or create the run folder, run the pipeline, map errors to exit codes.

Exit codes: 0 done (per-pair failures are in the report), 2 bad config, data or resume request,
1 unexpected error (traceback in logs/run.log), 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger("ieb")



class UsageError(Exception):
    """A command-line problem (exit code 2)."""


class _TqdmHandler(logging.StreamHandler):
    """Console log lines that do not break progress bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover
            self.handleError(record)


def setup_console_logging() -> None:
    log.setLevel(logging.DEBUG)  # the run's log file gets debug detail; the console INFO and up
    if not any(isinstance(h, _TqdmHandler) for h in log.handlers):
        handler = _TqdmHandler()
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    log.propagate = False


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python main.py", description="Edit every benchmark pair, score every edit, "
                                "write JSON / Markdown / HTML reports.")
    p.add_argument("--config", help="YAML config (optional with --resume: the run's config.resolved.yaml is used)")
    p.add_argument("--output-dir", help="folder holding run folders (default: pipeline.output_dir, 'outputs')")
    p.add_argument("--run-name", help="name of a new run folder (default: a timestamp)")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="PATH",
                   help="continue the newest run in the output folder, or the run at PATH")
    p.add_argument("--stage", choices=("all", "edit", "score", "report"), default="all",
                   help="edit: only edit; score: only score existing edits (a changed judge scores into new "
                        "records); report: rewrite the reports from the records")
    p.add_argument("--categories", help="comma-separated categories to run (overrides benchmark.categories)")
    p.add_argument("--limit", type=int, help="first N pairs of each category (a quick run)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override a config value, e.g. diffusion_model.init_args.num_inference_steps=4 (repeatable)")
    p.add_argument("--plan", action="store_true",
                   help="print the memory plan (checkpoint sizes from safetensors headers, estimated peaks, "
                        "what fits) and exit without loading a model")
    return p


def newest_run(output_dir: Path) -> Path:
    runs = [d for d in output_dir.glob("*") if (d / "state.sqlite").is_file()] if output_dir.is_dir() else []
    if not runs:
        raise UsageError(f"--resume: no run folder (one holding state.sqlite) in {output_dir}")
    return max(runs, key=lambda d: (d / "state.sqlite").stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:  # python main.py doctor [--json] [--output-dir DIR]
        from src.doctor import doctor_main

        return doctor_main(argv[1:])
    if argv[:1] == ["compare"]:  # python main.py compare RUN_OR_DIR ... (docs/compare.md)
        from src.compare import compare_main

        return compare_main(argv[1:])
    if argv[:1] == ["align"]:  # python main.py align RUN --human ratings.csv (docs/compare.md)
        from src.align import align_main

        return align_main(argv[1:])
    if argv[:1] in (["validate"], ["convert"]):  # python main.py validate|convert FILE ... (src/data/tools.py)
        from src.data import tools

        return (tools.validate_main if argv[0] == "validate" else tools.convert_main)(argv[1:])
    args = build_parser().parse_args(argv)
    setup_console_logging()
    from src.config import ConfigError, load_config
    from src.data import BenchmarkError, load_benchmark
    from src.models.base import ModelError
    from src.pipeline import ResumeError, run
    from src.prompts import PromptError
    from src.device_errors import StickyDeviceError

    user_errors = (UsageError, ConfigError, BenchmarkError, ModelError, ResumeError, PromptError)
    run_dir = None
    try:
        overrides = list(args.overrides)
        if args.categories is not None:
            overrides.append(f"benchmark.categories=[{', '.join(repr(c.strip()) for c in args.categories.split(',') if c.strip())}]")
        if args.limit is not None:
            overrides.append(f"benchmark.limit={args.limit}")
        if args.output_dir is not None:
            overrides.append(f"pipeline.output_dir={args.output_dir!r}")

        if args.resume is not None:
            if args.resume:
                run_dir = Path(args.resume)
                if not (run_dir / "state.sqlite").is_file():
                    raise UsageError(f"--resume {run_dir}: not a run folder (no state.sqlite there)")
            else:
                run_dir = newest_run(Path(args.output_dir or "outputs"))
            if args.run_name:
                raise UsageError("--run-name names a new run; it cannot be combined with --resume")
            config_path = Path(args.config) if args.config else run_dir / "config.resolved.yaml"
            cfg = load_config(config_path, overrides)
        elif args.plan:
            if not args.config:
                raise UsageError("--plan needs --config FILE")
            cfg = load_config(args.config, overrides)
        else:
            if args.stage in ("score", "report"):
                raise UsageError(f"--stage {args.stage} works on an existing run: add --resume [PATH]")
            if not args.config:
                raise UsageError("--config FILE is required (or --resume to continue a run)")
            cfg = load_config(args.config, overrides)
            from src.data import safe_name

            name = args.run_name or time.strftime("%Y%m%d-%H%M%S")
            if safe_name(name) != name:
                raise UsageError(f"--run-name {name!r} is not a plain folder name; try {safe_name(name)!r}")
            run_dir = Path(cfg.output_dir) / name
            if (run_dir / "state.sqlite").exists():
                raise UsageError(f"run folder {run_dir} exists already; use --resume {run_dir} to continue it "
                                 "or another --run-name")
        if args.plan:
            from src.memplan import format_plan, plan

            print(format_plan(plan(cfg.editor.to_dict(), cfg.judge.to_dict(), mode=cfg.mode)), flush=True)
            return 0
        bench = load_benchmark(cfg.data_path, cfg.categories, cfg.limit, cfg.data_format, cfg.image_root)  # a bad file stops us here
        print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
        paths = run(cfg, run_dir, args.stage, bench)
        for kind, path in paths.items():
            print(f"report ({kind}): {path}", flush=True)
        return 0
    except user_errors as e:
        log.error("%s", e)
        return 2
    except StickyDeviceError as e:  # the GPU is unusable for this process: one clear message, no traceback
        log.error("%s", e)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted; continue with: python main.py --resume %s", run_dir or "")
        return 130
    except Exception as e:  # noqa: BLE001 - last resort: say what happened, keep the traceback
        log.error("unexpected error: %s: %s\n%s", type(e).__name__, e, traceback.format_exc())
        return 1
