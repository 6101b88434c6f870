"""The edit stage's background PNG writer (src/writer.py) and the score stage's decode-on-use images
(ScoreRequest's loaders): same bytes and records as inline work, each record after its image, the editor
not waiting for the encode, and no PNG decode a judge does not ask for."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import threading
from pathlib import Path

import pytest
from PIL import Image

from src import writer as writer_mod
from src.cli import main
from src.models.base import BaseRewardModel, JudgePrompt, ScoreRequest, ScoreResult
from src.models.diffusion.implementations.identity import IdentityEditModel
from src.state import State
from src.writer import EditWriter

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench.common import make_benchmark, write_config  # noqa: E402


def image(i: int, size: int = 24) -> Image.Image:
    return Image.new("RGB", (size, size), (i * 40 % 256, 80, 200 - i))


def png_sha(img: Image.Image, level: int) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=level)
    return hashlib.sha256(buf.getvalue()).hexdigest()


# ----------------------------------------------------------------------------- the writer alone


@pytest.mark.parametrize("background", [True, False])
def test_each_commit_follows_its_durable_image_in_submission_order(tmp_path, background):
    seen = []

    def commit(i, path):
        def done(sha):
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha  # on disk before its record
            seen.append(i)
        return done

    with EditWriter(3, background=background, max_pending=2) as w:
        for i in range(7):
            path = tmp_path / "images" / f"{i}.png"
            w.submit(image(i), path, commit(i, path))
            assert len(w._pending) <= 2  # bounded host memory
    assert seen == list(range(7))
    assert [hashlib.sha256((tmp_path / "images" / f"{i}.png").read_bytes()).hexdigest() for i in range(7)] == \
        [png_sha(image(i), 3) for i in range(7)]


def test_a_failed_write_surfaces_on_the_callers_thread_and_earlier_edits_keep_their_records(tmp_path, monkeypatch):
    real = writer_mod.encode_and_write

    def encode(img, path, level):
        if path.name == "2.png":
            raise OSError(28, "No space left on device", str(path))
        return real(img, path, level)

    monkeypatch.setattr(writer_mod, "encode_and_write", encode)
    recorded = []
    with pytest.raises(OSError, match="No space"):
        with EditWriter(4) as w:
            for i in range(5):
                w.submit(image(i), tmp_path / f"{i}.png", lambda sha, i=i: recorded.append(i))
    # 0 and 1 were written before the failure and recorded first; whatever was submitted after 2 (the
    # error surfaces at the next submit, which stops the loop) and reached the disk keeps its record too
    assert recorded[:2] == [0, 1] and recorded == sorted(int(p.stem) for p in tmp_path.glob("*.png"))
    assert not (tmp_path / "2.png").exists()


def test_an_interrupt_still_records_the_edits_already_written(tmp_path):
    recorded = []
    with pytest.raises(KeyboardInterrupt):
        with EditWriter(4) as w:
            for i in range(3):
                w.submit(image(i), tmp_path / f"{i}.png", lambda sha, i=i: recorded.append(i))
            raise KeyboardInterrupt
    assert recorded == [0, 1, 2]


# ----------------------------------------------------------------------------- in the pipeline


class PixelCheckJudge(BaseRewardModel):
    """Scores 7 after checking that both images are the pair's original and its recorded edit."""

    uses_torch_rng = False

    def _load(self) -> None:
        pass

    def _release(self) -> None:
        pass

    def _to(self, device: str) -> None:
        pass

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        out = []
        for r in requests:
            assert not r.decoded("original") and not r.decoded("edited")  # nothing decoded up front
            ok = r.original.mode == "RGB" and r.original.tobytes() == r.edited.tobytes()  # identity editor
            out.append(ScoreResult(status="scored", score=7.0) if ok else
                       ScoreResult(status="score_failed", score=None, error="pixels differ"))
        return out


def run(tmp_path, n: int, judge: str | None = None, name: str = "r") -> Path:
    make_benchmark(tmp_path / "bench.json", n, 32, unique=3)
    cfg = write_config(tmp_path / "config.yaml", tmp_path / "bench.json", tmp_path / "out",
                       judge={"class_path": judge, "init_args": {"model_name": "pixel-check", "batch_size": 2}}
                       if judge else None)
    assert main(["--config", str(cfg), "--run-name", name]) == 0
    return tmp_path / "out" / name


def test_originals_are_decoded_once_with_a_judge_that_reads_no_pixels(tmp_path, monkeypatch):
    from src.data import records

    calls = []
    real = records._open_image  # every decode of an original goes through it
    monkeypatch.setattr(records, "_open_image", lambda raw, where: calls.append(where) or real(raw, where))
    reads = []
    real_raw = records.PairSpec._raw_image
    monkeypatch.setattr(records.PairSpec, "_raw_image", lambda self: reads.append(self.pair_id) or real_raw(self))
    run_dir = run(tmp_path, 6)  # the constant judge
    assert len(calls) == 6 == len(set(calls))  # the edit stage only, once per pair
    # the bytes too: read once to edit; the gallery's copy of the original is made from them
    assert len(reads) == 6 == len(set(reads)) and len(list((run_dir / "originals").iterdir())) == 3
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert [p["status"] for p in report["pairs"]] == ["scored"] * 6


def test_a_judge_that_reads_pixels_gets_the_original_and_the_recorded_edit(tmp_path):
    run_dir = run(tmp_path, 5, judge="tests.test_writer.PixelCheckJudge")
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert [(p["status"], p["score"]) for p in report["pairs"]] == [("scored", 7.0)] * 5


def test_a_damaged_recorded_edit_fails_that_pair_alone_with_its_path(tmp_path):
    run_dir = run(tmp_path, 4, judge="tests.test_writer.PixelCheckJudge")
    state = State(run_dir / "state.sqlite")
    try:
        rec = next(iter(state.edit_map().values()))
        bad = b"\x89PNG\r\n\x1a\n" + b"\0" * 40  # a PNG header and nothing decodable
        (run_dir / rec.image_path).write_bytes(bad)
        state.put_edit(type(rec)(**{**rec.__dict__, "output_sha256": hashlib.sha256(bad).hexdigest()}))
        state.conn.execute("DELETE FROM scores")
        state.conn.commit()
    finally:
        state.close()
    assert main(["--resume", str(run_dir), "--stage", "score"]) == 0
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    failed = [p for p in report["pairs"] if p["status"] != "scored"]
    assert len(failed) == 1 and failed[0]["pair_id"] == rec.pair_id
    assert rec.image_path in failed[0]["error"] and "cannot be decoded" in failed[0]["error"]


def test_the_editor_does_not_wait_for_the_previous_png(tmp_path, monkeypatch):
    """The first image's encode waits until the editor has been called again: inline writing would
    deadlock here (and time out), the writer thread lets the editor go on."""
    second_call = threading.Event()
    calls = []
    real_edit, real_write = IdentityEditModel.edit, writer_mod.encode_and_write

    def edit(self, requests):
        calls.append(len(requests))
        if len(calls) >= 2:
            second_call.set()
        return real_edit(self, requests)

    overlapped = []

    def encode(img, path, level):
        if not overlapped:
            overlapped.append(second_call.wait(timeout=20))
        return real_write(img, path, level)

    monkeypatch.setattr(IdentityEditModel, "edit", edit)
    monkeypatch.setattr(writer_mod, "encode_and_write", encode)
    run_dir = run(tmp_path, 3)
    assert overlapped == [True]
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert [p["status"] for p in report["pairs"]] == ["scored"] * 3


def test_score_request_loaders_run_once_and_images_pass_through():
    n = []
    prompt = JudgePrompt(system="s", user="u", template="t", template_hash="h")

    def load():
        n.append(1)
        return image(1)

    given = image(2)
    r = ScoreRequest(pair_id="p", category="c", original=load, edited=given, instruction="i", description=None,
                     prompt=prompt)
    assert not r.decoded("original") and r.decoded("edited") and r.edited is given
    assert r.original.tobytes() == image(1).tobytes() and r.images()[0] is r.original and len(n) == 1
    with pytest.raises(TypeError, match="original must be a PIL image or a loader"):
        ScoreRequest(pair_id="p", category="c", original=b"png", edited=given, instruction="i", description=None,
                     prompt=prompt)


def test_the_edit_stage_makes_the_gallery_thumbnails_and_the_report_stage_reuses_them(tmp_path, monkeypatch):
    from src import gallery

    made_late = []
    real = gallery.make_thumbnail
    monkeypatch.setattr(gallery, "make_thumbnail", lambda run_dir, rel, sha: made_late.append(rel) or real(run_dir, rel, sha))
    run_dir = run(tmp_path, 4)
    state = State(run_dir / "state.sqlite")
    try:
        recs = [r for r in state.edit_map().values() if r.status == "edited"]
    finally:
        state.close()
    assert len(recs) == 4
    for rec in recs:
        for sha in (rec.output_sha256, rec.input_sha256):
            assert Image.open(run_dir / "thumbs" / f"{sha}.webp").format == "WEBP"
    assert made_late == []  # every thumbnail was there before the report stage


def test_thumbnails_follow_exif_orientation_like_the_models_and_browsers(tmp_path):
    from src.gallery import make_thumbnail

    im = Image.new("RGB", (40, 20), (10, 200, 30))
    exif = im.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display": shown (and given to the models) as 20 x 40
    im.save(tmp_path / "o.jpg", exif=exif.tobytes())
    rel = make_thumbnail(tmp_path, "o.jpg", "abc")
    assert Image.open(tmp_path / rel).size == (20, 40)


def test_a_thumbnail_that_hits_a_full_disk_is_skipped_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from src.gallery import write_thumbnail

    real = Path.write_bytes

    def half(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(28, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", half)
    assert write_thumbnail(tmp_path, image(3), "abc") is None  # logged; the report stage retries
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []
