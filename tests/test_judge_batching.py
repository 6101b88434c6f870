"""The realistic-shape bench judge's pieces that are cheap to check (the checkpoint itself, ~10 s to build,
is only built by bench/judge_batching.py): the trained BPE tokenizer and the builder registry."""

from __future__ import annotations

import pytest

from src.models.reward.hf_vlm import check_digit_tokens
from src.models.tiny import TINY_BUILDERS
from src.models.tiny.tokenizer import SPECIAL_TOKENS, bpe_corpus, build_bpe_qwen_tokenizer, special_token_ids

CORPUS = ["Rate how well the edited image carries out the instruction, on a 0-10 scale. " * 3,
          "Reply with a single JSON object: {\"reasoning\": \"...\", \"score\": 7}. The instruction is followed.",
          "把画面中的物体移到左边，并保持其余内容不变。" * 2, "score 10 score 10 image image edited edited"]


@pytest.fixture(scope="module")
def bpe():
    return build_bpe_qwen_tokenizer(CORPUS, vocab_size=700)


def test_bpe_tokenizer_merges_words_and_splits_digits(bpe):
    ids = bpe.encode("Rate how well the edited image", add_special_tokens=False)
    assert bpe.convert_ids_to_tokens(ids) == ["Rate", "Ġhow", "Ġwell", "Ġthe", "Ġedited", "Ġimage"]
    check_digit_tokens(bpe)  # "10" is "1","0" and the logits prefix never merges with digits
    assert bpe.convert_ids_to_tokens(bpe.encode("2025", add_special_tokens=False)) == ["2", "0", "2", "5"]
    text = "没见过的字：鼎 and unseen words"  # bytes fall back to byte tokens: every text round-trips
    assert bpe.decode(bpe.encode(text, add_special_tokens=False)) == text
    assert len(bpe) <= 700


def test_bpe_tokenizer_has_the_qwen_specials_and_template(bpe):
    ids = special_token_ids(bpe)
    assert len(set(ids.values())) == len(ids)
    for token in SPECIAL_TOKENS:
        assert bpe.convert_tokens_to_ids(token) != bpe.unk_token_id
        assert bpe.encode(token, add_special_tokens=False) == [bpe.convert_tokens_to_ids(token)]
    text = bpe.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert bpe.padding_side == "left" and bpe.pad_token == "<|endoftext|>" and bpe.eos_token == "<|im_end|>"


def test_bpe_training_is_deterministic(bpe):
    again = build_bpe_qwen_tokenizer(CORPUS, vocab_size=700)
    assert again.get_vocab() == bpe.get_vocab()


def test_bench_corpus_holds_our_templates_and_every_common_chinese_character():
    texts = bpe_corpus()
    joined = "\n".join(texts[:-2])
    assert "Rate how well the EDITED image" in joined  # src/prompts/templates/default/user.j2
    assert texts[-1] == texts[-2] and texts[-1].count("\n") == 0x9FFF - 0x4E00 and "鼎" in texts[-1]
    assert "bench" not in TINY_BUILDERS["qwen3-vl-bench"].split(":")[0]  # built by src/, not the bench script
    assert TINY_BUILDERS["qwen3-vl-bench"] == "src.models.tiny.qwen3_vl:build_bench"


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    from src.models.tiny import resolve_model_path

    cache = tmp_path_factory.mktemp("ieb-cache")
    resolve_model_path("tiny:qwen3-vl", cache_dir=str(cache))
    return str(cache)


def _request(i: int):
    from PIL import Image

    from src.models.base import JudgePrompt, ScoreRequest

    prompt = JudgePrompt(system="You judge image edits.", user="Rate the edit from 0 to 10." + " Really." * (3 * i),
                         template="t", template_hash="h")
    return ScoreRequest(pair_id=f"p{i}", category="cat", original=Image.new("RGB", (48, 40), (20 * i, 120, 40)),
                        edited=Image.new("RGB", (40, 48), (200, 30 * i, 10)), instruction="make it red",
                        description=None, prompt=prompt)


def test_logits_mode_computes_lm_head_on_the_last_two_positions_only(tiny_cache):
    """The lm_head over every prompt position would be most of a prefill's FLOPs with a real vocabulary."""
    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel

    judge = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", scoring="logits",
                               batch_size=2, cache_dir=tiny_cache)
    judge.load()
    rows = []
    judge.model.lm_head.register_forward_hook(lambda _m, args, _out: rows.append(tuple(args[0].shape)))
    results = judge.score([_request(0), _request(1)])
    assert [r.status for r in results] == ["scored", "scored"]
    assert len(rows) == 1 and rows[0][:2] == (2, 2), rows  # (batch, kept positions, hidden)


# ----------------------------------------------------------------------------- batches of similar lengths

from tests.fakes import FakeRewardModel  # noqa: E402


class RecordingJudge(FakeRewardModel):
    batches: list[list[tuple[str, tuple[int, int]]]] = []

    def score(self, requests):
        RecordingJudge.batches.append([(r.pair_id, r.edited.size) for r in requests])
        return super().score(requests)


def _sized_benchmark(tmp_path):
    import json

    from tests.conftest import png_b64

    sizes = [(64, 48), (16, 16), (64, 48), (16, 16), (40, 40), (16, 16)]  # interleaved large / small
    pairs = [{"pair_id": f"p{i}", "original_image_b64": png_b64((30 * i, 90, 40), size),
              "edit_instruction": "make it red", "original_description": "a square"} for i, size in enumerate(sizes)]
    path = tmp_path / "sized.json"
    path.write_text(json.dumps({"物理": {"data_pairs": pairs}}), encoding="utf-8")
    return path


def _run_sized(tmp_path, batch_size, name):
    import json

    from src.cli import main
    from tests.conftest import write_config

    RecordingJudge.batches = []
    cfg = write_config(tmp_path / f"{name}.yaml", _sized_benchmark(tmp_path),
                       judge={"class_path": "tests.test_judge_batching.RecordingJudge",
                              "init_args": {"batch_size": batch_size}})
    assert main(["--config", str(cfg), "--run-name", name]) == 0
    report = json.loads((tmp_path / "outputs" / name / "report.json").read_text(encoding="utf-8"))
    return RecordingJudge.batches, {p["pair_id"]: (p["status"], p["score"]) for p in report["pairs"]}


def test_a_category_is_batched_by_input_size_and_scores_do_not_change(tmp_path):
    batches, scores = _run_sized(tmp_path, 2, "b2")
    assert [[pid for pid, _ in b] for b in batches] == [["p1", "p3"], ["p5", "p4"], ["p0", "p2"]]
    assert all(len({size for _, size in b}) == 1 for b in batches[::2])  # no padding between small / large
    one_by_one, scores_1 = _run_sized(tmp_path, 1, "b1")
    assert [pid for (pid, _), in one_by_one] == [f"p{i}" for i in range(6)]  # batch 1: the benchmark's order
    assert scores == scores_1 and all(status == "scored" for status, _ in scores.values())


def test_judge_input_size_reads_the_png_header_only(tmp_path):
    from PIL import Image

    from src.data import PairSpec
    from src.pipeline import judge_input_size
    from src.state import EditRecord

    Image.new("RGB", (30, 20)).save(tmp_path / "e.png")
    pair = PairSpec(category="c", pair_id="p", index=0, file_stem="p", instruction="abc", description="de")
    rec = EditRecord(category="c", pair_id="p", position=0, status="edited", instruction="abc", description="de",
                     metadata={}, image_path="e.png", output_sha256="0", input_sha256="0", seed=1,
                     editor_fingerprint="f", error=None, info={}, seconds=0.0, created_at=0.0)
    assert judge_input_size(tmp_path, pair, rec) == (600, 5)
    (tmp_path / "e.png").write_bytes(b"not a png")
    assert judge_input_size(tmp_path, pair, rec) == (0, 5)  # unreadable: fails later, with its message
