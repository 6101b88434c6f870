"""Build run folders cheaply: records written through src/state.py, reports through src/report.py.

Used by the compare / judges / align tests, which need exact scores (the fake judge's are hashes).
Nothing here fakes a report: the folder holds a real state.sqlite and `write_reports` builds report.json
from its records exactly as the pipeline does at the end of a run.
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

from PIL import Image

from src.config import sha256_json
from src.report import write_reports
from src.state import EditRecord, ScoreRecord, State, write_file_atomic


def judge_spec(model: str = "judge-a", protocol: str | None = None, served: bool = False) -> dict[str, Any]:
    if served:
        args: dict[str, Any] = {"model": model, "base_url": "http://127.0.0.1:1/v1"}
        path = "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel"
    else:
        args = {"model_name": model}
        path = "tests.fakes.FakeRewardModel"
    if protocol:
        args["protocol"] = protocol
    return {"class_path": path, "init_args": args}


def config(editor: str, judge: dict[str, Any]) -> dict[str, Any]:
    return {"benchmark": {"data_path": "/bench.json", "categories": None, "limit": None},
            "diffusion_model": {"class_path": "tests.fakes.FakeEditModel", "init_args": {"model_name": editor}},
            "reward_model": judge, "prompts": {"default": "auto", "categories": {}},
            "pipeline": {"mode": "two_stage"}, "seed": 0}


def input_sha(category: str, pair_id: str) -> str:
    return hashlib.sha256(f"{category}/{pair_id}".encode()).hexdigest()


def write_run(run_dir: Path, scores: dict[tuple[str, str], Any], *, editor: str = "editor-a",
              judges: list[tuple[dict[str, Any], dict[tuple[str, str], Any]]] | None = None,
              judge: dict[str, Any] | None = None) -> Path:
    """A finished run. `scores`: (category, pair id) -> a float (scored), "edit_failed" or "score_failed",
    for the first judge; `judges` adds more (spec, scores) scorings of the same edits, written in order
    (the last one is the run's latest judge)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = State(run_dir / "state.sqlite")
    plan: dict[str, list[str]] = {}
    for cat, pid in scores:
        plan.setdefault(cat, []).append(pid)
    import json

    state.set_meta("plan", json.dumps(plan, ensure_ascii=False))
    edit_fp = sha256_json({"editor": editor})
    for pos, ((cat, pid), value) in enumerate(scores.items()):
        common = dict(category=cat, pair_id=pid, position=pos, instruction=f"{cat} instruction {pid}",
                      description="d", metadata={}, input_sha256=input_sha(cat, pid), seed=pos,
                      editor_fingerprint=edit_fp, info={}, seconds=0.1, created_at=time.time())
        if value == "edit_failed":
            state.put_edit(EditRecord(status="edit_failed", image_path=None, output_sha256=None,
                                      error="injected edit failure", **common))
            continue
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (pos * 20 % 256, 80, 120)).save(buf, format="PNG")
        rel = f"images/{pid}.png"
        write_file_atomic(run_dir / rel, buf.getvalue())
        state.put_edit(EditRecord(status="edited", image_path=rel, output_sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
                                  error=None, **common))
    judges = [(judge or judge_spec(), scores)] + list(judges or [])
    edits = state.edit_map()
    paths = None
    for spec, table in judges:
        fp = sha256_json({"judge": spec})
        inv = state.start_invocation("score", config(editor, spec), sha256_json(config(editor, spec)), edit_fp, fp)
        for (cat, pid), value in table.items():
            rec = edits[(cat, pid)]
            if rec.status != "edited":
                continue
            ok = isinstance(value, (int, float))
            state.put_score(ScoreRecord(category=cat, pair_id=pid, judge_fingerprint=fp,
                                        status="scored" if ok else "score_failed", score=float(value) if ok else None,
                                        raw_reply=f'{{"score": {value}}}' if ok else "no score here",
                                        reasoning=None, error=None if ok else "could not parse a score", attempts=1,
                                        details={}, template="default", template_hash="h", edit_sha256=rec.output_sha256,
                                        seconds=0.1, created_at=time.time()))
        state.update_invocation(inv, {"model_loads": {"editor": 0, "judge": 1}, "model_swaps": 0}, finished=True)
        paths = write_reports(state, run_dir, fp)
    state.close()
    return paths["json"]
