"""Command line: parse arguments, find or create the run folder, run the pipeline, map errors to exit codes.

Exit codes: 0 done (per-pair failures are in the report), 2 bad config, data or resume request, or a
fault of the machine (disk full, read-only folder, damaged state.sqlite, run folder in use), 3 nothing
could be edited or scored, 1 unexpected error (traceback in logs/run.log), 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
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
    p.add_argument("--retry-failed", nargs="?", const="all", choices=("edit", "score", "all"), default=None,
                   help="with --resume: also redo pairs whose edit (edit) or score (score) failed, or both (all, "
                        "the default when no value is given)")
    p.add_argument("--trust-run-config", action="store_true",
                   help="with --resume and no --config: let the run folder's own config name code outside this "
                        "project's packages (only for a run folder you made)")
    p.add_argument("--plan", action="store_true",
                   help="print the memory plan (checkpoint sizes from safetensors headers, estimated peaks, "
                        "what fits) and exit without loading a model")
    return p


def is_run_folder(path: Path) -> bool:
    """A run folder holds state.sqlite, or at least the config.resolved.yaml written before it."""
    return (path / "state.sqlite").is_file() or (path / "config.resolved.yaml").is_file()


def newest_run(output_dir: Path) -> Path:
    runs = [d for d in output_dir.glob("*") if is_run_folder(d)] if output_dir.is_dir() else []
    if not runs:
        raise UsageError(f"--resume: no run folder (one holding state.sqlite) in {output_dir}")
    return max(runs, key=lambda d: max(f.stat().st_mtime for f in (d / "state.sqlite", d / "config.resolved.yaml")
                                       if f.is_file()))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["doctor"]:  # python main.py doctor [--json] [--output-dir DIR]
        from src.doctor import doctor_main

        return doctor_main(argv[1:])
    if argv[:1] == ["smoke"]:  # python main.py smoke --config FILE (docs/gpu.md)
        from src.smoke import smoke_main

        setup_console_logging()
        return smoke_main(argv[1:])
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
    from src.runguard import sigterm_as_interrupt

    with sigterm_as_interrupt():  # SIGTERM (SLURM, timeout, systemd) takes Ctrl-C's path from here on
        return run_command(args)


def run_command(args: argparse.Namespace) -> int:
    """The benchmark run of `main`: find or create the run folder, run, map errors to exit codes."""
    from src.config import ConfigError, load_config
    from src.data import BenchmarkError, load_benchmark
    from src.models.base import ModelError
    from src.pipeline import ResumeError, run
    from src.prompts import PromptError
    from src.device_errors import StickyDeviceError
    from src.runguard import RunLocked, environment_fault
    from src.state import StateError

    from src.distributed import DistributedError, world

    user_errors = (UsageError, ConfigError, BenchmarkError, ModelError, ResumeError, PromptError, StateError,
                   RunLocked, DistributedError)
    run_dir = None
    saved_cfg = None
    w = world()  # one process, or a rank of `accelerate launch` / `torchrun` (src/distributed.py)
    if w.rank > 0:  # the other ranks' consoles show warnings and errors only, marked with their rank
        for handler in log.handlers:
            if isinstance(handler, _TqdmHandler):
                handler.setLevel(logging.WARNING)
                handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [rank {w.rank}] %(message)s",
                                                       "%H:%M:%S"))
    try:
        overrides = list(args.overrides)
        subset = []  # --categories / --limit: with --resume they hold for this invocation only
        if args.categories is not None:
            subset.append(f"benchmark.categories=[{', '.join(repr(c.strip()) for c in args.categories.split(',') if c.strip())}]")
        if args.limit is not None:
            subset.append(f"benchmark.limit={args.limit}")
        if args.output_dir is not None:
            overrides.append(f"pipeline.output_dir={args.output_dir!r}")
        if args.retry_failed and args.resume is None:
            raise UsageError("--retry-failed works on an existing run: add --resume [PATH]")

        if args.resume is not None:
            if args.run_name:
                raise UsageError("--run-name names a new run; it cannot be combined with --resume")
            def locate() -> tuple[str, str, bool]:  # the main process decides; every rank gets its answer
                if args.resume:
                    folder = Path(args.resume)
                    if not is_run_folder(folder):
                        raise UsageError(f"--resume {folder}: not a run folder (no state.sqlite there)")
                elif args.config and not args.output_dir:  # the newest run in the config's pipeline.output_dir
                    folder = newest_run(Path(load_config(args.config, overrides).output_dir))
                else:
                    folder = newest_run(Path(args.output_dir or "outputs"))
                if args.config:
                    return str(folder), args.config, True
                path = run_config_path(folder)
                if not args.trust_run_config:
                    check_run_config_unchanged(folder, path)
                return str(folder), str(path), args.trust_run_config

            run_dir, config_path, trusted = w.broadcast(locate)
            run_dir, config_path = Path(run_dir), Path(config_path)
            cfg = load_config(config_path, overrides + subset, trusted=trusted)
            if subset:
                saved_cfg = load_config(config_path, overrides, trusted=trusted)
        elif args.plan:
            if not args.config:
                raise UsageError("--plan needs --config FILE")
            cfg = load_config(args.config, overrides + subset)
        else:
            if args.stage in ("score", "report"):
                raise UsageError(f"--stage {args.stage} works on an existing run: add --resume [PATH]")
            if not args.config:
                raise UsageError("--config FILE is required (or --resume to continue a run)")
            cfg = load_config(args.config, overrides + subset)
            from src.data import safe_name

            def new_run_dir() -> str:  # the main process decides (its timestamp); every rank gets its answer
                name = args.run_name or time.strftime("%Y%m%d-%H%M%S")
                if safe_name(name) != name:
                    raise UsageError(f"--run-name {name!r} is not a plain folder name; try {safe_name(name)!r}")
                folder = Path(cfg.output_dir) / name
                if (folder / "state.sqlite").exists():
                    raise UsageError(f"run folder {folder} exists already; use --resume {folder} to continue it "
                                     "or another --run-name")
                return str(folder)

            run_dir = Path(w.broadcast(new_run_dir))
        if args.plan:
            from src.memplan import format_plan, plan

            print(format_plan(plan(cfg.editor.to_dict(), cfg.judge.to_dict(), mode=cfg.mode)), flush=True)
            return 0
        # a bad file stops us here; reports come from the records alone, so --stage report does not read it
        bench = None if args.stage == "report" else \
            load_benchmark(cfg.data_path, cfg.categories, cfg.limit, cfg.data_format, cfg.image_root)
        if w.is_main:
            print(f"run folder: {run_dir}", file=sys.stderr, flush=True)
        paths = run(cfg, run_dir, args.stage, bench, saved_cfg=saved_cfg, retry_failed=args.retry_failed)
        for kind, path in paths.items():
            print(f"report ({kind}): {path}", flush=True)
        return nothing_done_code(paths, args.stage)
    except user_errors as e:
        log.error("%s", e)
        return 2
    except StickyDeviceError as e:  # the GPU is unusable for this process: one clear message, no traceback
        log.error("%s", e)
        return 1
    except KeyboardInterrupt as e:
        from src.runguard import Terminated

        what = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        if run_dir is not None and is_run_folder(run_dir):
            log.error("%s; continue with: python main.py --resume %s", what, run_dir)
        else:
            log.error("%s before the run started; run the same command again", what)
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # noqa: BLE001 - last resort: say what happened, keep the traceback
        fault = environment_fault(e, run_dir, resumable=run_dir is not None and is_run_folder(run_dir))
        if fault:  # a fault of the machine, not of the code: one line that says what to do
            log.debug("environment fault", exc_info=True)
            log.error("%s", fault)
            return 2
        log.error("unexpected error: %s: %s\n%s", type(e).__name__, e, traceback.format_exc())
        return 1


def run_config_path(run_dir: Path) -> Path:
    """The run folder's config.resolved.yaml; restored from the copy inside state.sqlite if it is gone."""
    path = run_dir / "config.resolved.yaml"
    if path.is_file() or not (run_dir / "state.sqlite").is_file():
        return path
    import sqlite3

    from src.state import write_file_atomic

    try:
        with contextlib.closing(sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'config_resolved'").fetchone()
    except sqlite3.Error:
        row = None
    if row is None:
        raise UsageError(f"--resume {run_dir}: config.resolved.yaml is missing and the records hold no copy; "
                         "give the config with --config FILE")
    write_file_atomic(path, row[0].encode("utf-8"))
    log.warning("restored %s from the copy kept in state.sqlite", path)
    return path


def check_run_config_unchanged(run_dir: Path, config_path: Path) -> None:
    """A run folder's config.resolved.yaml must name the same models as the last invocation recorded in its
    state.sqlite; an edited file is refused (a shared folder could point it at other code)."""
    import json
    import sqlite3

    import yaml

    if not (run_dir / "state.sqlite").is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{run_dir / 'state.sqlite'}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT config FROM runs ORDER BY id DESC LIMIT 1").fetchone()
        recorded = json.loads(row[0]) if row else None
        current = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except (sqlite3.Error, OSError, ValueError, yaml.YAMLError):
        return  # the checks that follow report a damaged file with the right message
    if not recorded or not isinstance(current, dict):
        return
    for key in ("diffusion_model", "reward_model", "allow_remote_code"):
        if current.get(key) != recorded.get(key):
            raise UsageError(f"{config_path}: {key} differs from what this run last ran with (recorded in "
                             "state.sqlite); an edited run-folder config is not trusted. Pass the config with "
                             "--config FILE, or add --trust-run-config if you edited it yourself")


def nothing_done_code(paths: dict, stage: str) -> int:
    """3 when the run produced nothing it was asked for: no pair edited (--stage edit) or no pair scored."""
    import json

    if stage == "report" or "json" not in paths:
        return 0
    report = json.loads(Path(paths["json"]).read_text(encoding="utf-8"))
    f = report["overall"]["failed"]
    if not sum(f.values()):
        return 0
    if stage == "edit":
        if not any(p["edited_image"] for p in report["pairs"]):
            log.error("no pair could be edited (%d invalid input, %d edit failed); see the report's failures",
                      f["invalid_input"], f["edit_failed"])
            return 3
        return 0
    if report["overall"]["scored"] == 0:
        log.error("no pair could be scored (%d score failed, %d edit failed, %d invalid input); see the report's "
                  "failures, then retry with --resume --retry-failed", f["score_failed"], f["edit_failed"],
                  f["invalid_input"])
        return 3
    return 0
