"""The recipe: setup -> edit stage -> release the editor -> score stage -> report.

Read top to bottom. `run()` is the whole run; every helper below it does one step. Models are
*controllers*: they are built from the config, loaded once, used, released. What they produce becomes
*records* in the run's SQLite file (src/state.py), and the reports are built from those alone.

Two modes:
- `two_stage` (default): load the editor once, edit every pending pair of every category, release it
  (GPU and host memory), load the judge once, score every pending edit. One swap per run.
- `interleaved`: the per-category alternation of the user's earlier design (edit category 1, score
  category 1, edit category 2, ...), with both models loaded once and moved off/on the GPU between
  categories: 2 x categories - 1 swaps. Kept for comparison.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from PIL import Image
from tqdm import tqdm

from src.config import RunConfig, dump_yaml, sha256_json
from src.data import Benchmark, InvalidPair, PairSpec, load_benchmark, safe_name
from src.models.base import BaseEditModel, BaseRewardModel, EditRequest, ScoreRequest, ScoreResult
from src.prompts import render_prompt, template_variables
from src.scoring.judging import ScoringSetup, scoring_setup  # protocols, templates, per-pair prompts
from src.report import write_reports
from src import gallery
from src.state import EditRecord, ScoreRecord, State, write_file_atomic
from src.batching import AdaptiveBatcher
from src.writer import EditWriter
from src.distributed import merge_shards, open_shard, shard_path, world
from src.perf import PerfRecorder
from src.residency import choose_residency
from src.device_errors import stop_on_sticky
from src.runguard import RunLock, check_model_source
from src.limits import check_instruction, instruction_limit

log = logging.getLogger("ieb")

STAGES = ("all", "edit", "score", "report")


class ResumeError(Exception):
    """The run folder's records were made by something else than this config (named in the message)."""


@dataclass
class Stats:
    """What this invocation did (a controller; its `to_dict()` is stored with the invocation)."""

    model_loads: dict[str, int] = field(default_factory=lambda: {"editor": 0, "judge": 0})
    model_swaps: int = 0
    seconds: dict[str, float] = field(default_factory=dict)
    on_gpu: str | None = None  # which model is active on the device
    perf: PerfRecorder = field(default_factory=PerfRecorder)
    residency: dict[str, str] = field(default_factory=lambda: {"policy": "release", "chosen": "release", "reason": ""})
    batchers: dict[str, AdaptiveBatcher] = field(default_factory=dict)

    def add_seconds(self, key: str, dt: float) -> None:
        self.seconds[key] = round(self.seconds.get(key, 0.0) + dt, 4)

    def to_dict(self) -> dict[str, Any]:
        return {"model_loads": dict(self.model_loads), "model_swaps": self.model_swaps, "seconds": dict(self.seconds),
                "performance": self.perf.to_dict(), "residency": dict(self.residency),
                "batching": {name: b.summary() for name, b in self.batchers.items()}}


# ============================================================================ the recipe


def run(cfg: RunConfig, run_dir: Path, stage: str = "all", bench: Benchmark | None = None, *,
        saved_cfg: RunConfig | None = None, retry_failed: str | None = None) -> dict[str, Path]:
    """Run (or resume) `stage` of the benchmark in `run_dir`; return the report paths.

    `saved_cfg`: the run's own config when this invocation works on a subset (`--categories` / `--limit`
    with `--resume`): it, not `cfg`, is saved, and the run's plan is kept. `retry_failed` ("edit",
    "score" or "all"): failed records of that kind count as work left (see docs/resume.md)."""
    assert stage in STAGES, stage
    if stage == "report":
        return report_only(cfg, run_dir)  # reports come from the records: no benchmark file, no model
    # --- setup: everything cheap and checkable happens before any model loads
    bench = bench or load_benchmark(cfg.data_path, cfg.categories, cfg.limit, cfg.data_format, cfg.image_root)
    editor: BaseEditModel = cfg.editor.build()  # constructors are cheap: nothing loads yet
    judge: BaseRewardModel = cfg.judge.build()
    w = world()  # one process, or one of N data-parallel ranks (src/distributed.py)
    if w.distributed and cfg.mode != "two_stage":
        raise ResumeError("pipeline.mode: interleaved runs in one process only (it is the comparison mode); "
                          "use two_stage with several processes")
    resuming = (run_dir / "state.sqlite").is_file()
    w.barrier()  # every rank has looked before rank 0 creates the file
    if not resuming:  # a new run: the models its stages use are checked before the run folder exists
        check_models(editor if stage in ("all", "edit") else None, judge if stage in ("all", "score") else None)
        if stage in ("all", "edit"):
            warn_instruction_language(editor, bench)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = RunLock(run_dir)
    if w.is_main:
        lock.acquire()  # one run (one process, or one data-parallel group) per run folder
    log_file = add_file_logging(run_dir, w.rank)
    state = work_state = None
    retry_scores = retry_failed in ("score", "all")
    try:
        def plan_work():  # rank 0 alone touches state.sqlite; what it finds goes to every rank
            nonlocal state
            saved = (saved_cfg or cfg).to_dict()
            if not resuming:  # what a resume needs is on disk before state.sqlite exists (a kill here is resumable)
                write_file_atomic(run_dir / "config.resolved.yaml", dump_yaml(saved).encode("utf-8"))
            state = State(run_dir / "state.sqlite")
            merge_shards(state, run_dir)  # records of the ranks of a killed data-parallel run
            scoring = scoring_setup(cfg, run_categories(state, bench) if saved_cfg else bench)
            check_resume(state, cfg, bench, stage, scoring.fingerprint)
            if saved_cfg is None or state.get_meta("plan") is None:  # a subset of one invocation keeps the plan
                record_plan(state, bench)
            todo = pending_edits(state, bench, run_dir, retry=retry_failed in ("edit", "all")) \
                if stage in ("all", "edit") else []
            more = stage in ("all", "score") and bool(
                pending_scores(state, bench, run_dir, scoring.fingerprint, retry=retry_scores))
            write_file_atomic(run_dir / "config.resolved.yaml", dump_yaml(saved).encode("utf-8"))
            state.set_meta("config_resolved", dump_yaml(saved))  # a second copy, inside the records
            inv = state.start_invocation(stage, cfg.to_dict(), cfg.fingerprint(), cfg.editor.fingerprint(),
                                         scoring.fingerprint)
            return [(p.category, p.pair_id) for p in todo], more, inv, scoring

        edit_keys, more_scores, invocation, scoring = w.broadcast(plan_work)
        scoring_fp = scoring.fingerprint
        by_key = {(p.category, p.pair_id): p for p in bench.iter_pairs()}
        edits = w.share([by_key[key] for key in edit_keys], lambda p: (p.category, p.pair_id))
        work = bool(edit_keys) or more_scores
        if resuming:  # only the models with work left are checked (a finished run imports no model code)
            check_models(editor if edits else None, judge if work and stage in ("all", "score") else None)
        work_state = open_shard(shard_path(run_dir, invocation, w.rank)) if w.distributed else state
        stats = Stats()
        if work:
            seed_everything(cfg.seed, cfg.torch_threads,
                            torch_too=any(getattr(m, "uses_torch_rng", True) for m in (editor, judge)))
            stats.residency = choose_residency_for(cfg)
        stats.batchers = {"editor": make_batcher(cfg.editor, editor, "edit", cfg, stats),
                          "judge": make_batcher(cfg.judge, judge, "score", cfg, stats)}

        log.info("plan: %d pairs in %d categories; %d to edit%s", sum(len(p) for p in bench.pairs.values()),
                 len(bench.categories), len(edit_keys),
                 f" ({len(edits)} by this process, rank {w.rank} of {w.size})" if w.distributed else "")

        if cfg.mode == "two_stage":
            # --- stage 1: edit every pending pair
            if edits:
                banner("stage 1/2: edit")
                activate(editor, "editor", stats, other=judge)
                with stats.perf.stage("edit"):
                    timed(stats, "edit", lambda: edit_pairs(editor, edits, work_state, run_dir, cfg,
                                                             plan_positions(bench), stats.batchers["editor"]))
            work_state = sync_ranks(w, state, work_state, run_dir, invocation)
            if w.is_main:
                state.update_invocation(invocation, stats.to_dict())
            # --- swap: the editor makes room (released for good by default), the judge loads once
            # --- stage 2: score every edit that has no score from this judge
            scores = []
            if stage in ("all", "score"):
                todo = w.broadcast(lambda: [(p.category, p.pair_id, rec) for p, rec in pending_scores(
                    state, bench, run_dir, scoring_fp, retry=retry_scores)])
                scores = w.share([(by_key[(c, i)], rec) for c, i, rec in todo],
                                 lambda item: (item[0].category, item[0].pair_id))
            if scores:
                banner("stage 2/2: score")
                activate(judge, "judge", stats, other=editor)
                with stats.perf.stage("score"):
                    timed(stats, "score", lambda: score_pairs(judge, scores, work_state, run_dir, scoring,
                                                               stats.batchers["judge"]))
        else:
            run_interleaved(editor, judge, edits, bench, state, run_dir, cfg, scoring, stage, stats, retry_scores)
        release(editor, "editor", stats)
        release(judge, "judge", stats)
        work_state = sync_ranks(w, state, work_state, run_dir, invocation, reopen=False)
        if not w.is_main:
            return {}  # rank 0 writes the report, from the merged records

        # --- report, from the records alone
        state.update_invocation(invocation, {**stats.to_dict(), "world_size": w.size}, finished=True)
        banner("report")
        gallery.materialize(state, bench, run_dir)  # originals and thumbnails, written once (src/gallery.py)
        return write_reports(state, run_dir, scoring_fp)
    except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM: the invocation is closed with what it did
        if state is not None and "invocation" in locals():
            with contextlib.suppress(Exception):
                state.update_invocation(invocation, {**stats.to_dict(), "interrupted_by": type(e).__name__},
                                        finished=True)
        raise
    except Exception:
        log.debug("run stopped by an error", exc_info=True)  # the traceback goes to logs/run.log
        raise
    finally:
        if work_state is not None and work_state is not state:
            work_state.close()
        if state is not None:
            state.close()
        log.removeHandler(log_file)
        log_file.close()
        if w.is_main:
            lock.release()


def sync_ranks(w, state: State | None, work_state, run_dir: Path, invocation: int, reopen: bool = True):
    """Data-parallel only: every rank closes its shard file, rank 0 merges them into the run's database,
    and (with `reopen`) each rank starts a new shard file. A single process returns `work_state` as is."""
    if not w.distributed:
        return work_state
    work_state.close()
    w.barrier()
    if w.is_main:
        merge_shards(state, run_dir)
    w.barrier()
    return open_shard(shard_path(run_dir, invocation, w.rank)) if reopen else None


def report_only(cfg: RunConfig, run_dir: Path) -> dict[str, Path]:
    """`--stage report`: rewrite the reports from the records; the benchmark file is not read."""
    lock = RunLock(run_dir)
    lock.acquire()
    state = State(run_dir / "state.sqlite")
    try:
        scoring = scoring_setup(cfg, run_categories(state, None))
        gallery.materialize(state, None, run_dir)  # missing thumbnails only: the benchmark is not read
        return write_reports(state, run_dir, scoring.fingerprint)
    finally:
        state.close()
        lock.release()


def run_categories(state: State, bench: Benchmark | None):
    """The run's categories, in order, from its recorded plan (the benchmark's when there is none yet)."""
    plan = json.loads(state.get_meta("plan") or "null")
    if plan is None:
        if bench is None:
            raise ResumeError(f"{state.path}: the run has no recorded plan yet; nothing to report")
        return bench
    return types.SimpleNamespace(categories=list(plan))


def run_interleaved(editor, judge, edits, bench, state, run_dir, cfg, scoring, stage, stats,
                    retry_scores: bool = False) -> None:
    """Per category: editor on the device, edit, editor off, judge on, score, judge off."""
    by_cat: dict[str, list[PairSpec]] = {}
    for pair in edits:
        by_cat.setdefault(pair.category, []).append(pair)
    for category in bench.categories:
        banner(f"category {category}")
        if by_cat.get(category):
            activate(editor, "editor", stats, other=judge)
            with stats.perf.stage("edit"):
                timed(stats, "edit", lambda: edit_pairs(editor, by_cat[category], state, run_dir, cfg,
                                                         plan_positions(bench), stats.batchers["editor"]))
        scores = [s for s in pending_scores(state, bench, run_dir, scoring.fingerprint, retry=retry_scores)
                  if s[0].category == category] \
            if stage in ("all", "score") else []
        if scores:
            activate(judge, "judge", stats, other=editor)
            with stats.perf.stage("score"):
                timed(stats, "score", lambda: score_pairs(judge, scores, state, run_dir, scoring,
                                                           stats.batchers["judge"]))


# ============================================================================ setup helpers


class Progress:
    """Two tqdm bars with ETA: the whole stage, and the category being worked on."""

    def __init__(self, stage: str, total: int) -> None:
        self.name = stage
        self.quiet = not world().is_main  # one set of bars: the main process's
        self.stage = tqdm(total=total, desc=f"{stage} (all)", unit="pair", position=0, dynamic_ncols=True,
                          disable=self.quiet)
        self.category: tqdm | None = None

    def start_category(self, name: str, total: int) -> None:
        if self.category is not None:
            self.category.close()
        self.category = tqdm(total=total, desc=f"{self.name} {name}", unit="pair", position=1, leave=False,
                             dynamic_ncols=True, disable=self.quiet)

    def update(self, n: int) -> None:
        self.stage.update(n)
        if self.category is not None:
            self.category.update(n)

    def close(self) -> None:
        if self.category is not None:
            self.category.close()
        self.stage.close()


def warn_instruction_language(editor, bench: Benchmark) -> None:
    """An English-only editor given Chinese instructions (src/models/diffusion/languages.py)."""
    from src.models.diffusion.languages import instruction_language_warning

    warning = instruction_language_warning(editor, bench.iter_pairs())
    if warning:
        log.warning("%s", warning)


def check_models(*models) -> None:
    """Each model's cheap checks (device, dtype, installed code paths); None entries are skipped."""
    for model in models:
        if model is not None:
            check_model_source(model)  # model_name: a known tiny arch, an existing local path
            model.check()


def add_file_logging(run_dir: Path, rank: int = 0) -> logging.Handler:
    """Everything the console shows, and debug detail, also goes to logs/run.log in the run folder
    (logs/run.rank<r>.log for the other processes of a data-parallel run)."""
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    name = "run.log" if rank == 0 else f"run.rank{rank}.log"
    handler = logging.FileHandler(run_dir / "logs" / name, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    return handler


def banner(text: str) -> None:
    log.info("=" * 20 + f" {text} " + "=" * 20)


def timed(stats: Stats, key: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        stats.add_seconds(key, time.perf_counter() - t0)


def activate(model, name: str, stats: Stats, other=None) -> None:
    """Make `model` the one on the device. The other model makes room as the residency policy says
    (`release`: freed for good; `offload`: to pinned host memory; `resident`: stays); count swaps."""
    other_name = "judge" if name == "editor" else "editor"
    moved_seconds, moved_bytes, swapped = 0.0, 0, False
    if other is not None and other.loaded and stats.on_gpu == other_name:
        policy = stats.residency["chosen"]
        if policy == "release":
            release(other, other_name, stats)
            swapped = True
        elif policy == "offload":
            timed(stats, f"offload_{other_name}", other.unload_from_gpu)
            moved_seconds += (other.last_move or {}).get("seconds") or 0.0
            moved_bytes += (other.last_move or {}).get("bytes") or 0
            swapped = True
    if not model.loaded:
        log.info("loading %s: %s", name, type(model).__name__)
        t0 = time.perf_counter()
        timed(stats, f"load_{name}", model.load)
        stats.perf.event(f"load_{name}", time.perf_counter() - t0)
        stats.model_loads[name] += 1
    elif not model.on_gpu:
        timed(stats, f"to_gpu_{name}", model.load_to_gpu)
        moved_seconds += (model.last_move or {}).get("seconds") or 0.0
        moved_bytes += (model.last_move or {}).get("bytes") or 0
    if swapped:
        stats.model_swaps += 1
        stats.perf.event("swap", moved_seconds, bytes=moved_bytes)
    stats.on_gpu = name


def release(model, name: str, stats: Stats) -> None:
    """Free a model's GPU and host memory (a no-op when it is not loaded)."""
    if not model.loaded:
        return
    t0 = time.perf_counter()
    timed(stats, f"release_{name}", model.release)
    stats.perf.event(f"release_{name}", time.perf_counter() - t0)
    if stats.on_gpu == name:
        stats.on_gpu = None


def choose_residency_for(cfg: RunConfig) -> dict[str, str]:
    """The residency policy (`pipeline.residency`), `auto` decided from the memory plan."""
    plan = None  # `resident` / `offload` are checked against the plan in both modes; auto decides from it
    if cfg.residency in ("resident", "offload") or (cfg.residency == "auto" and cfg.mode == "interleaved"):
        from src.memplan import plan as memory_plan

        plan = memory_plan(cfg.editor.to_dict(), cfg.judge.to_dict(), mode=cfg.mode)
    chosen, reason = choose_residency(cfg.residency, cfg.mode, plan)
    (log.warning if reason.startswith("WARNING") else log.info)("residency: %s (%s)", chosen, reason)
    return {"policy": cfg.residency, "chosen": chosen, "reason": reason}


def make_batcher(spec, model, stage: str, cfg: RunConfig, stats: Stats) -> AdaptiveBatcher:
    """`batch_size: N` shrinks on out-of-memory (and grows back after `pipeline.batch_grow_after`
    successes); `batch_size: auto` starts at 1 and doubles while it fits, up to `max_batch_size`."""
    auto = spec.init_args.get("batch_size") == "auto"
    batcher = AdaptiveBatcher(model.batch_size, auto=auto, max_size=cfg.max_batch_size,
                              grow_after=cfg.batch_grow_after,
                              on_batch=lambda n, seconds: stats.perf.model_call(stage, n, seconds),
                              what=type(model).__name__)
    if auto:
        model.batch_size = batcher.max_size  # the batcher sizes the batches; the model must not re-split them
    return batcher


def seed_everything(seed: int, torch_threads: int | None = None, torch_too: bool = True) -> None:
    """Seed random, NumPy and (when a model of the run uses torch's RNG: `torch_too`) torch. A run of
    torch-free models (identity editor, API judge) never imports torch (~2 s and ~190 MiB saved)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    if not torch_too:
        return
    import torch

    torch.manual_seed(seed)
    if torch_threads:  # tiny models on a small CPU run several times faster on one thread
        torch.set_num_threads(torch_threads)


def pair_seed(run_seed: int, category: str, pair_id: str) -> int:
    """The seed of one pair's edit: stable across runs, batch sizes and resumes."""
    digest = hashlib.sha256(f"{run_seed}\0{category}\0{pair_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def record_plan(state: State, bench: Benchmark) -> None:
    """Which pairs this run covers, in order, so a report of a partial run can count what is pending."""
    plan = {cat: [p.pair_id for p in pairs] for cat, pairs in bench.pairs.items()}
    state.set_meta("plan", json.dumps(plan, ensure_ascii=False))


def _describe_change(old: dict, new: dict, key: str) -> str:
    a, b = old.get(key, {}), new.get(key, {})
    lines = []
    if a.get("class_path") != b.get("class_path"):
        lines.append(f"{key}.class_path: {a.get('class_path')!r} -> {b.get('class_path')!r}")
    oa, ob = a.get("init_args", {}), b.get("init_args", {})
    for name in sorted(set(oa) | set(ob)):
        if oa.get(name) != ob.get(name):
            lines.append(f"{key}.init_args.{name}: {oa.get(name)!r} -> {ob.get(name)!r}")
    return "; ".join(lines) or f"{key} (prompt templates or seed)"


def report_removed_pairs(state: State, bench: Benchmark) -> None:
    """Pairs of the run's recorded plan that the benchmark file no longer has: said aloud, and kept in
    the records' meta (`removed_pairs`) so the report lists them; their records are kept too."""
    old = json.loads(state.get_meta("plan") or "{}")
    if not old:
        return
    now = {(p.category, p.pair_id) for p in bench.iter_pairs()}
    selected = set(bench.categories)
    removed = [[cat, pid] for cat, ids in old.items() if cat in selected for pid in ids if (cat, pid) not in now]
    if removed:
        shown = ", ".join(f"{c}/{p}" for c, p in removed[:5]) + (" ..." if len(removed) > 5 else "")
        log.warning("%d pair(s) of this run are no longer in %s: %s; they leave the report (their records are "
                    "kept, and listed as removed_pairs in report.json)", len(removed), bench.path, shown)
        known = json.loads(state.get_meta("removed_pairs") or "[]")
        state.set_meta("removed_pairs", json.dumps(known + [r for r in removed if r not in known],
                                                   ensure_ascii=False))


def check_resume(state: State, cfg: RunConfig, bench: Benchmark, stage: str, scoring_fp: str) -> None:
    """Refuse to mix records made by another editor, judge, seed or input into this run."""
    invocations = state.invocations()
    if not invocations:
        return
    last = invocations[-1]
    editor_fp = cfg.editor.fingerprint()
    edits = state.edit_map()
    stale = [r for r in edits.values() if r.editor_fingerprint != editor_fp]
    if stale and stage in ("all", "edit"):
        raise ResumeError(
            f"this run's edits were made by another editor configuration: "
            f"{_describe_change(last['config'], cfg.to_dict(), 'diffusion_model')}. "
            f"Start a new run for a different editor (or use --stage score to re-score the existing edits).")
    if stage == "all" and state.judge_fingerprints() and scoring_fp not in state.judge_fingerprints() \
            and last["judge_fingerprint"] != scoring_fp:
        raise ResumeError(
            f"this run was scored by another judge or prompt: "
            f"{_describe_change(last['config'], cfg.to_dict(), 'reward_model')}. "
            f"Use --stage score to re-score the existing edits with the new judge (kept as new score records).")
    report_removed_pairs(state, bench)
    for pair in bench.iter_pairs():
        rec = edits.get((pair.category, pair.pair_id))
        if rec is None or rec.status == "invalid_input":
            continue
        if rec.description != pair.description:  # rendered into the judge prompt: part of what was measured
            raise ResumeError(f"{bench.path}: category {pair.category!r}, pair {pair.pair_id!r} changed since it "
                              f"was edited (field 'description' differs); start a new run")
        recorded = (rec.info or {}).get("extra_images_sha256")  # absent in records made before it was kept
        if recorded is not None and recorded != extra_images_sha256(pair):
            now = extra_images_sha256(pair)
            roles = sorted(r for r in set(recorded) | set(now) if recorded.get(r) != now.get(r))
            raise ResumeError(f"{bench.path}: category {pair.category!r}, pair {pair.pair_id!r} changed since it "
                              f"was edited (extra image(s) {', '.join(roles)} differ: they reach the models); "
                              "start a new run")
        if stage in ("all", "edit"):
            if rec.seed != pair_seed(cfg.seed, pair.category, pair.pair_id):
                raise ResumeError(f"category {pair.category!r}, pair {pair.pair_id!r} was edited with seed "
                                  f"{rec.seed}, but the config's seed {cfg.seed} gives another; start a new run")
            try:
                sha = pair.image_sha256()
            except InvalidPair:
                sha = None
            if sha != rec.input_sha256 or pair.instruction != rec.instruction:
                raise ResumeError(f"{bench.path}: category {pair.category!r}, pair {pair.pair_id!r} changed since "
                                  f"it was edited (image or instruction differs); start a new run")


# ============================================================================ stage 1: edit


def pending_edits(state: State, bench: Benchmark, run_dir: Path, retry: bool = False) -> list[PairSpec]:
    """Pairs with no edit record, or whose recorded image is missing or no longer matches its sha256
    (it is re-edited: same seed, same bytes); with `retry`, also the pairs that failed (edit_failed,
    invalid_input)."""
    done = state.edit_map()
    out = []
    for pair in bench.iter_pairs():
        rec = done.get((pair.category, pair.pair_id))
        if rec is None or (retry and rec.status in ("edit_failed", "invalid_input")):
            out.append(pair)
        elif rec.status == "edited" and not image_intact(run_dir, rec):
            log.warning("category %r, pair %r: %s is missing or damaged (sha256 differs); editing it again",
                        pair.category, pair.pair_id, rec.image_path)
            out.append(pair)
    return out


def image_intact(run_dir: Path, rec: EditRecord) -> bool:
    """The committed image is on disk with the bytes its record names."""
    h = hashlib.sha256()
    try:
        with open(run_dir / rec.image_path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return False
    return h.hexdigest() == rec.output_sha256


def _edit_requests(pairs: Iterable[PairSpec], state: State, cfg: RunConfig, editor_fp: str,
                   positions: dict, limit: tuple[int, str] | None = None
                   ) -> Iterator[tuple[PairSpec, EditRequest | None, str | None, bytes | None]]:
    """Decode pairs one at a time; record invalid ones (also instructions over the models' `limit`, see
    src/limits.py) right away and yield the valid ones with the sha256 and bytes of their original."""
    for pair in pairs:
        seed = pair_seed(cfg.seed, pair.category, pair.pair_id)
        try:
            if pair.error:
                raise InvalidPair(pair.error)
            too_long = check_instruction(pair.instruction, limit) if limit else None
            if too_long:
                raise InvalidPair(f"{pair.where()}: {too_long}")
            image, raw = pair.load_image_and_bytes()
            sha = pair.image_sha256()
            extra = pair.extra_images()
        except InvalidPair as e:
            log.warning("invalid input: %s", e)
            state.put_edit(_edit_record(pair, positions, "invalid_input", editor_fp, seed=seed, error=str(e)))
            yield pair, None, None, None
            continue
        yield pair, EditRequest(pair_id=pair.pair_id, category=pair.category, image=image,
                                instruction=pair.instruction, seed=seed, description=pair.description,
                                extra_images=extra, metadata=pair.metadata), sha, raw


def _edit_record(pair: PairSpec, positions: dict, status: str, editor_fp: str, **kw) -> EditRecord:
    # the extra images' hashes go with the record (info), so a resume can tell when one changed
    info = {**(kw.get("info") or {}), "extra_images_sha256": extra_images_sha256(pair)}
    return EditRecord(category=pair.category, pair_id=pair.pair_id, position=positions[(pair.category, pair.pair_id)],
                      status=status, instruction=pair.instruction, description=pair.description,
                      metadata=pair.metadata, image_path=kw.get("image_path"), output_sha256=kw.get("output_sha256"),
                      input_sha256=kw.get("input_sha256"), seed=kw.get("seed"), editor_fingerprint=editor_fp,
                      error=kw.get("error"), info=info, seconds=kw.get("seconds"), created_at=time.time())


def extra_images_sha256(pair: PairSpec) -> dict[str, str | None]:
    """sha256 of each extra image of the pair by role (original_N reach the editor, every role the judge);
    None for one that cannot be read. `{}` for a pair with its original only."""
    out: dict[str, str | None] = {}
    for role in pair.image_roles:
        try:
            out[role] = hashlib.sha256(pair.named_image_bytes(role)).hexdigest()
        except InvalidPair:
            out[role] = None
    return out


def plan_positions(bench: Benchmark) -> dict[tuple[str, str], int]:
    return {(p.category, p.pair_id): i for i, p in enumerate(bench.iter_pairs())}


def edit_pairs(editor: BaseEditModel, pairs: list[PairSpec], state: State, run_dir: Path, cfg: RunConfig,
               positions: dict[tuple[str, str], int], batcher: AdaptiveBatcher) -> None:
    editor_fp = cfg.editor.fingerprint()
    from src.config import import_class

    limit = instruction_limit(cfg.max_instruction_chars, editor, import_class(cfg.judge.class_path, "reward_model", []))
    bar = Progress("edit", len(pairs))
    # PNG encode + fsync run on a writer thread while the editor works; records follow their images
    with EditWriter(cfg.png_compress_level, run_dir=run_dir) as writer:
        for category, cat_pairs in _by_category(pairs, lambda p: p.category):
            bar.start_category(category, len(cat_pairs))
            batch: list[tuple[PairSpec, EditRequest, str, bytes]] = []
            for pair, request, sha, raw in _edit_requests(cat_pairs, state, cfg, editor_fp, positions, limit):
                if request is None:
                    bar.update(1)
                    continue
                batch.append((pair, request, sha, raw))
                if len(batch) >= batcher.size:
                    _run_edit_batch(editor, batch, state, run_dir, writer, editor_fp, positions, batcher)
                    bar.update(len(batch))
                    batch = []
            if batch:
                _run_edit_batch(editor, batch, state, run_dir, writer, editor_fp, positions, batcher)
                bar.update(len(batch))
    bar.close()


def _by_category(items: Sequence, category_of: Callable[[Any], str]) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for item in items:
        groups.setdefault(category_of(item), []).append(item)
    return list(groups.items())


def edit_image_path(category: str, pair: PairSpec) -> str:
    return f"images/{safe_name(category)}/{pair.file_stem}.png"


def _run_edit_batch(editor, batch, state, run_dir, writer: EditWriter, editor_fp, positions,
                    batcher: AdaptiveBatcher) -> None:
    t0 = time.perf_counter()
    results = batcher.call(editor.edit, [req for _, req, _, _ in batch])  # halves the batch on out-of-memory
    # A sticky CUDA error (illegal memory access, device-side assert, ECC) stops the stage unrecorded.
    stop_on_sticky("edit", [f"category {p.category!r}, pair {p.pair_id!r}" for p, _, _, _ in batch], results)
    per_item = (time.perf_counter() - t0) / len(batch)
    for (pair, req, sha, raw), res in zip(batch, results):
        common = dict(seed=req.seed, input_sha256=sha, seconds=round(per_item, 4))
        error = str(res) if isinstance(res, Exception) else res.error
        if isinstance(res, Exception) or res.image is None:
            error = error or "the editor returned no image"
            log.warning("edit failed: category %r, pair %r: %s", pair.category, pair.pair_id, error)
            state.put_edit(_edit_record(pair, positions, "edit_failed", editor_fp, error=error,
                                        info=getattr(res, "info", {}), **common))
            continue
        rel = edit_image_path(pair.category, pair)
        record = functools.partial(_edit_record, pair, positions, "edited", editor_fp, image_path=rel,
                                   info=res.info, **common)
        writer.submit(res.image, run_dir / rel,  # the image first (written on the writer thread) ...
                      lambda out_sha, record=record: state.put_edit(record(output_sha256=out_sha)),  # ... its record
                      originals=[(req.image, sha, raw)])  # (+ the gallery's copy and thumbnails: src/gallery.py)


# ============================================================================ stage 2: score


def pending_scores(state: State, bench: Benchmark, run_dir: Path, scoring_fp: str,
                   retry: bool = False) -> list[tuple[PairSpec, EditRecord]]:
    """Edited pairs with no score from this judge for this very edit (with `retry`, also failed scores)."""
    edits = state.edit_map()
    scored = state.score_map(scoring_fp)
    out = []
    for pair in bench.iter_pairs():
        rec = edits.get((pair.category, pair.pair_id))
        if rec is None or rec.status != "edited":
            continue
        done = scored.get((pair.category, pair.pair_id))
        if done is None or done.edit_sha256 != rec.output_sha256 or (retry and done.status == "score_failed"):
            out.append((pair, rec))
    return out


def score_pairs(judge: BaseRewardModel, items: list[tuple[PairSpec, EditRecord]], state: State, run_dir: Path,
                scoring: ScoringSetup, batcher: AdaptiveBatcher) -> None:
    bar = Progress("score", len(items))
    for category, cat_items in _by_category(items, lambda item: item[0].category):
        bar.start_category(category, len(cat_items))
        if batcher.size > 1:  # similar input lengths share a batch: less padding (docs/benchmarks.md, section 3)
            cat_items = sorted(cat_items, key=lambda item: judge_input_size(run_dir, *item))
        start = 0
        while start < len(cat_items):
            chunk = cat_items[start:start + batcher.size]  # the size can change between batches
            start += len(chunk)
            requests, ready = [], []
            for pair, rec in chunk:
                try:
                    requests.append(_score_request(pair, rec, run_dir, scoring))
                    ready.append((pair, rec))
                except (InvalidPair, OSError, ValueError) as e:  # the edit on disk is unusable
                    _put_score(state, pair, rec, scoring, ScoreResult(status="score_failed", score=None, error=str(e)),
                               None)
            if requests:
                t0 = time.perf_counter()
                results = batcher.call(judge.score, requests)  # halves the batch on out-of-memory
                stop_on_sticky("score", [f"category {p.category!r}, pair {p.pair_id!r}" for p, _ in ready], results,
                               result_errors=False)  # a served judge's errors are the server's, not ours
                per_item = round((time.perf_counter() - t0) / len(requests), 4)
                for (pair, rec), req, res in zip(ready, requests, results):
                    if isinstance(res, Exception):
                        res = ScoreResult(status="score_failed", score=None, error=f"{type(res).__name__}: {res}")
                    _put_score(state, pair, rec, scoring, res, per_item)
            bar.update(len(chunk))
    bar.close()


def judge_input_size(run_dir: Path, pair: PairSpec, rec: EditRecord) -> tuple[int, int]:
    """How long the judge's input for this pair will be, roughly, without decoding anything: the edit's
    pixel count (read from its PNG header; the original usually has its aspect and a VLM processor scales
    both to a similar token budget), then the length of the instruction and description. Used to order a
    category's pairs so that a batch holds inputs of similar length and a VLM judge pads less; a stable
    sort, so equal keys keep the benchmark's order, and the order is the same on every run."""
    pixels = 0
    try:
        with open(run_dir / rec.image_path, "rb") as f:
            head = f.read(24)
        if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
            pixels = int.from_bytes(head[16:20], "big") * int.from_bytes(head[20:24], "big")
    except OSError:
        pass  # a missing edit fails later, with its message
    return pixels, len(pair.instruction or "") + len(pair.description or "")


def _score_request(pair: PairSpec, rec: EditRecord, run_dir: Path, scoring: ScoringSetup) -> ScoreRequest:
    data = (run_dir / rec.image_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != rec.output_sha256:
        raise ValueError(f"{rec.image_path} changed on disk since it was recorded (sha256 differs)")
    # Both images are decoded on the judge's first look (ScoreRequest's loaders): a judge that never reads
    # pixels costs no decode, and the original is not decoded a second time for nothing.
    return score_request(pair, functools.partial(_decode_edit, data, rec.image_path), scoring)


def score_request(pair: PairSpec, edited: Image.Image | Callable[[], Image.Image], scoring: ScoringSetup,
                  original: Image.Image | Callable[[], Image.Image] | None = None) -> ScoreRequest:
    """What the judge gets for one pair (also used by `smoke`, so it judges exactly what a run would):
    the rendered prompt, the pair's extra images (reference / ground truth ...), its metadata, and the
    prompt of every query its protocol asks (src/scoring/judging.py)."""
    prompt = render_prompt(scoring.templates[pair.category], **template_variables(
        instruction=pair.instruction, description=pair.description, category=pair.category, pair_id=pair.pair_id,
        metadata=pair.metadata, image_roles=("original", "edited")))
    return ScoreRequest(pair_id=pair.pair_id, category=pair.category,
                        original=pair.load_image if original is None else original, edited=edited,
                        instruction=pair.instruction, description=pair.description, prompt=prompt,
                        named_images=scoring.images_for(pair), metadata=dict(pair.metadata or {}),
                        prompts=scoring.prompts_for(pair))


def _decode_edit(data: bytes, image_path: str) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data)).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{image_path}: the recorded edit cannot be decoded: {e}") from None


def _put_score(state, pair, rec, scoring: ScoringSetup, res: ScoreResult, seconds) -> None:
    if res.status == "score_failed":
        log.warning("score failed: category %r, pair %r: %s", pair.category, pair.pair_id, res.error)
    state.put_score(ScoreRecord(
        category=pair.category, pair_id=pair.pair_id, judge_fingerprint=scoring.fingerprint, status=res.status,
        score=res.score, raw_reply=res.raw_reply, reasoning=res.reasoning, error=res.error, attempts=res.attempts,
        details=res.details, template=scoring.labels[pair.category], template_hash=scoring.hashes[pair.category],
        edit_sha256=rec.output_sha256,
        seconds=seconds, created_at=time.time()))
