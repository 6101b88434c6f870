"""PerfRecorder: stage timing, percentiles, host RSS sampling, GPU peaks (faked), events, the table."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from src.perf import PerfRecorder, format_table, percentile


def test_stage_wall_time_and_accumulation():
    perf = PerfRecorder()
    with perf.stage("edit"):
        time.sleep(0.2)
    with perf.stage("score"):
        time.sleep(0.1)
    with perf.stage("edit"):  # interleaved mode opens a stage again: it accumulates
        time.sleep(0.2)
    d = perf.to_dict()
    assert 0.35 < d["stages"]["edit"]["wall_s"] < 3.0
    assert 0.08 < d["stages"]["score"]["wall_s"] < 2.0
    assert d["stages"]["edit"]["openings"] == 2
    assert d["stages"]["edit"]["peak_rss_bytes"] > 0
    assert d["peak_rss_bytes"] >= d["stages"]["edit"]["peak_rss_bytes"]
    assert d["stages"]["edit"]["peak_gpu_bytes"] is None  # CPU machine


def test_stage_records_time_when_the_body_raises():
    perf = PerfRecorder()
    with pytest.raises(KeyError):
        with perf.stage("edit"):
            time.sleep(0.05)
            raise KeyError("x")
    assert perf.to_dict()["stages"]["edit"]["wall_s"] > 0.03
    assert perf._sampler is None  # the sampler thread stops when no stage is open


def test_percentiles_hand_computed():
    xs = [0.1, 0.2, 0.3, 0.4, 1.0]
    # linear: h = 4 * 0.5 = 2 -> 0.3 ; h = 4 * 0.95 = 3.8 -> 0.4 + 0.8 * 0.6 = 0.88
    assert percentile(xs, 50) == pytest.approx(0.3)
    assert percentile(xs, 95) == pytest.approx(0.88)
    assert percentile([5.0], 95) == 5.0
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0], 50) == pytest.approx(1.5)
    rng = np.random.default_rng(0)
    ys = list(rng.random(37))
    for q in (0, 5, 50, 95, 100):
        assert percentile(ys, q) == pytest.approx(float(np.percentile(ys, q)))


def test_model_calls_items_and_batch_histogram():
    perf = PerfRecorder()
    with perf.stage("score"):
        perf.model_call("score", n_items=4, seconds=2.0, batch_size=4)  # 0.5 s per item, 4 items
        perf.model_call("score", n_items=2, seconds=2.0, batch_size=2)  # 1.0 s per item, 2 items
        perf.model_call("score", n_items=1, seconds=0.1)  # batch_size defaults to n_items
    st = perf.to_dict()["stages"]["score"]
    assert st["items"] == 7 and st["calls"] == 3
    assert st["model_s"] == pytest.approx(4.1)
    assert st["batch_sizes"] == {"1": 1, "2": 1, "4": 1}
    assert sorted(st["item_s"]) == pytest.approx([0.1, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    # sorted: 0.1 .5 .5 .5 .5 1 1 ; p50: h=3 -> 0.5 ; p95: h=5.7 -> 1.0
    assert st["p50_item_s"] == pytest.approx(0.5)
    assert st["p95_item_s"] == pytest.approx(1.0)
    assert st["items_per_s"] == pytest.approx(7 / st["wall_s"])


def test_record_is_json_and_recomputable():
    perf = PerfRecorder()
    with perf.stage("edit"):
        time.sleep(0.01)
        for n, s in ((3, 0.3), (3, 0.9), (1, 0.05)):
            perf.model_call("edit", n, s)
    perf.event("load_editor", 1.5)
    perf.event("release_editor", 0.2)
    perf.event("load_judge", 2.5)
    perf.event("swap", 0.4, bytes=1000)
    perf.event("swap", 0.6, bytes=3000)
    d = json.loads(json.dumps(perf.to_dict()))
    st = d["stages"]["edit"]
    assert st["p50_item_s"] == pytest.approx(float(np.percentile(st["item_s"], 50)))
    assert st["p95_item_s"] == pytest.approx(float(np.percentile(st["item_s"], 95)))
    assert st["items"] == len(st["item_s"]) == sum(int(k) * v for k, v in st["batch_sizes"].items())
    assert st["model_s"] == pytest.approx(sum(st["item_s"]))
    assert st["items_per_s"] == pytest.approx(st["items"] / st["wall_s"])
    assert d["loads"] == {"editor": 1.5, "judge": 2.5}
    assert d["releases"] == {"editor": 0.2}
    assert d["swaps"] == {"count": 2, "seconds": pytest.approx(1.0), "bytes": 4000}
    assert len(d["events"]) == 5
    with pytest.raises(ValueError):
        perf.event("teleport", 1.0)


def test_rss_sampler_sees_a_big_allocation_inside_a_stage():
    perf = PerfRecorder()
    with perf.stage("idle"):
        time.sleep(0.15)
    base = perf.to_dict()["stages"]["idle"]["peak_rss_bytes"]
    with perf.stage("alloc"):
        big = b"\x01" * (200 * 1024 * 1024)  # written, so the pages are resident
        time.sleep(0.3)  # the sampler thread reads while it is alive ...
        del big  # ... and it is gone before the end-of-stage reading
        time.sleep(0.05)
    peak = perf.to_dict()["stages"]["alloc"]["peak_rss_bytes"]
    assert peak - base > 100 * 1024 * 1024


def test_gpu_peak_per_stage_with_fake_cuda(monkeypatch):
    import torch

    state = {"peak": {0: 0, 1: 0}, "resets": 0}

    def reset(i):
        state["resets"] += 1
        state["peak"][i] = 0

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i: state["peak"][i])

    perf = PerfRecorder()
    with perf.stage("edit"):
        state["peak"][0] = 5000
        state["peak"][1] = 10
    with perf.stage("score"):
        state["peak"][0] = 700
    with perf.stage("outer"):
        state["peak"][0] = 9000
        with perf.stage("inner"):  # resets the counters: the outer peak is folded in first
            state["peak"][0] = 100
    d = perf.to_dict()["stages"]
    assert d["edit"]["peak_gpu_bytes"] == {"cuda:0": 5000, "cuda:1": 10}
    assert d["score"]["peak_gpu_bytes"] == {"cuda:0": 700, "cuda:1": 0}
    assert d["inner"]["peak_gpu_bytes"]["cuda:0"] == 100
    assert d["outer"]["peak_gpu_bytes"]["cuda:0"] == 9000
    assert state["resets"] == 8  # 4 stages x 2 devices
    assert "cuda:0" in format_table(perf.to_dict())


def test_format_table():
    perf = PerfRecorder()
    with perf.stage("edit"):
        perf.model_call("edit", 2, 1.0, batch_size=2)
    with perf.stage("report"):
        pass
    perf.event("load_editor", 3.0)
    perf.event("swap", 0.5, bytes=2 * 1024**3)
    text = format_table(perf.to_dict())
    lines = text.splitlines()
    assert lines[0].startswith("| stage | wall s |")
    assert lines[2].startswith("| edit |") and "2x1" in lines[2]
    assert lines[3].startswith("| report |")
    assert "swaps: 1" in text and "2.00 GiB" in text and "loads: editor 3.00 s" in text


def test_format_table_speaks_the_reports_language():
    from src.report_labels import LABELS

    perf = PerfRecorder()
    with perf.stage("edit"):
        perf.model_call("edit", 2, 1.0, batch_size=2)
    perf.event("load_editor", 3.0)
    zh = format_table(perf.to_dict(), LABELS["zh"])
    assert zh.splitlines()[0].startswith("| 阶段 | 墙钟时间（秒） |") and "加载: editor 3.00 s" in zh
    assert zh.splitlines()[2].startswith("| edit |")  # stage names are identifiers, not translated
    assert format_table(perf.to_dict(), LABELS["en"]) == format_table(perf.to_dict())
