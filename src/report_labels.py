"""Report labels in English and Chinese (`report.language: en | zh | auto` in the config).

`auto` (the default) chooses Chinese when a category name contains CJK characters — the benchmark's
own categories (物理, 环境, 社会, 因果, 指代) are written in Chinese, and so are its users. The labels
are this project's own wording; data (instructions, category names, judge replies) is never translated.
"""

from __future__ import annotations

import unicodedata
from typing import Iterable

from src.perf import PERF_LABELS_EN

LANGUAGES = ("auto", "en", "zh")

EN = {
    "html_lang": "en",
    "title": "Image-edit benchmark report",
    "editor": "editor", "judge": "judge", "mode": "mode", "seed": "seed",
    "model_loads": "model loads", "swaps": "swaps",
    "config_fp": "config fingerprint", "scoring_fp": "scoring fingerprint",
    "overall": "overall", "overall_line": "Overall", "mean": "mean", "over": "over", "of": "of", "pairs": "pairs",
    "macro_mean": "macro mean over categories",
    "category": "category", "scored": "scored", "invalid_input": "invalid input", "edit_failed": "edit failed",
    "score_failed": "score failed", "pending": "pending", "std": "std", "median": "median", "min": "min", "max": "max",
    "ci95": "95% CI", "failed": "failed",
    "std_note": "std is the sample standard deviation; every number here is recomputable from `pairs` in report.json.",
    "dims_title": "Judge protocol dimensions (mean over scored pairs)",
    "charts": "Charts", "chart_means": "Mean score per category",
    "chart_means_ci": "Mean score per category (bars: 95% CI)",
    "chart_means_no_ci": "Mean score per category (no confidence intervals in this report)",
    "chart_hist": "Score histogram (scored pairs)", "count": "count", "score": "score",
    "performance": "Performance", "no_perf": "No model ran in this run's latest invocations.",
    "failures": "Failures", "none": "None.", "reason": "reason", "status": "status", "pair": "pair",
    "gallery": "Pairs", "all_categories": "all categories", "all_statuses": "all statuses",
    "search": "search the instruction or pair id", "sort": "sort",
    "sort_plan": "benchmark order", "sort_desc": "score, high to low", "sort_asc": "score, low to high",
    "prev": "previous", "next": "next", "showing": "showing", "no_rows": "No pair matches the filters.",
    "original": "original", "edited": "edited", "reference": "reference", "instruction": "instruction",
    "description": "description", "reasoning": "judge's reasoning", "raw_reply": "raw judge reply",
    "error": "error", "truncated": "truncated; the full text is in report.json",
    "several_judges": "several judges scored this run", "all_judges": "all judges and their agreement",
    "no_image": "no image", "close": "close", "noscript": "The pair gallery needs JavaScript; report.json "
    "has every pair.", "attempts": "judge attempts",
    # benchmark score and uncertainty sections (headline.*.j2, uncertainty.md.j2; docs/benchmark-scores.md)
    "bench_score": "Benchmark score", "no_bench_score": "No benchmark score: %s.",
    "bench_intro": "%s numbers as its paper defines them (mirrors %s); scale: %s.",
    "bench_variants": "\"Scored\" is the mean over the pairs the judge scored (what the official scripts report "
                      "when they guess nothing); \"all pairs\" counts every failed or missing pair as the scale's "
                      "floor, so failing hard pairs does not help. Coverage = scored pairs / pairs.",
    "group": "group", "metric": "metric", "mean_scored": "mean over scored", "all_pairs": "all pairs, failures as floor",
    "se": "se", "coverage": "coverage", "official_rounding": "official rounding", "breakdown": "Breakdown (%s rows)",
    "unusable": "Pairs the benchmark score could not use (%s):",
    "unusable_more": "… %s more (see `headline.problems` in report.json)",
    "uncertainty": "Uncertainty",
    "unc_intro": "Means with their 95%% confidence interval and standard error (%s, %s resamples, seed %s; se of a "
                 "mean = sample std / sqrt(n)). Recompute them from `pairs` in report.json with `src.stats.mean_ci`.",
    "unc_short": "95%% confidence intervals: %s, %s resamples, seed %s; se of a mean = sample std / sqrt(n).",
    "macro_note": "The macro mean's interval resamples the pairs within each category (a stratified bootstrap).",
    "dimension": "dimension",
    **PERF_LABELS_EN,
}

ZH = {
    "html_lang": "zh-CN",
    "title": "图像编辑评测报告",
    "editor": "编辑模型", "judge": "评分模型", "mode": "模式", "seed": "随机种子",
    "model_loads": "模型加载次数", "swaps": "切换次数",
    "config_fp": "配置指纹", "scoring_fp": "评分指纹",
    "overall": "总体", "overall_line": "总体", "mean": "平均分", "over": "基于", "of": "/", "pairs": "个样本",
    "macro_mean": "各类别平均分的平均",
    "category": "类别", "scored": "已评分", "invalid_input": "输入无效", "edit_failed": "编辑失败",
    "score_failed": "评分失败", "pending": "未完成", "std": "标准差", "median": "中位数", "min": "最低",
    "max": "最高", "ci95": "95% 置信区间", "failed": "失败",
    "std_note": "标准差为样本标准差（n - 1）；此处每个数字都可由 report.json 中的 `pairs` 重新算出。",
    "dims_title": "评分维度（已评分样本的平均值）",
    "charts": "图表", "chart_means": "各类别平均分",
    "chart_means_ci": "各类别平均分（误差线：95% 置信区间）",
    "chart_means_no_ci": "各类别平均分（本报告没有置信区间）",
    "chart_hist": "分数分布（已评分样本）", "count": "数量", "score": "分数",
    "performance": "性能", "no_perf": "本次运行最近的调用中没有运行任何模型。",
    "failures": "失败", "none": "无。", "reason": "原因", "status": "状态", "pair": "样本",
    "gallery": "样本", "all_categories": "全部类别", "all_statuses": "全部状态",
    "search": "搜索编辑指令或样本 ID", "sort": "排序",
    "sort_plan": "评测集顺序", "sort_desc": "分数从高到低", "sort_asc": "分数从低到高",
    "prev": "上一页", "next": "下一页", "showing": "显示", "no_rows": "没有符合筛选条件的样本。",
    "original": "原图", "edited": "编辑结果", "reference": "参考图", "instruction": "编辑指令",
    "description": "原图描述", "reasoning": "评分理由", "raw_reply": "评分模型原始回复",
    "error": "错误", "truncated": "已截断；完整内容见 report.json",
    "several_judges": "本次运行有多个评分模型", "all_judges": "全部评分模型及其一致性",
    "no_image": "无图像", "close": "关闭", "noscript": "样本浏览需要 JavaScript；report.json 中有全部样本。",
    "attempts": "评分尝试次数",
    "bench_score": "基准分数", "no_bench_score": "无基准分数：%s。",
    "bench_intro": "%s 的分数，按其论文的定义计算（对应官方脚本 %s）；量程：%s。",
    "bench_variants": "“已评分”为评分模型成功评分的样本的平均值（即官方脚本不猜分时给出的值）；“全部样本”把每个失败或"
                      "缺失的样本计为量程的最低分，因此在难样本上失败不会占便宜。覆盖率 = 已评分样本数 / 样本数。",
    "group": "分组", "metric": "指标", "mean_scored": "已评分样本平均", "all_pairs": "全部样本（失败计最低分）",
    "se": "标准误", "coverage": "覆盖率", "official_rounding": "官方舍入", "breakdown": "细分（%s 行）",
    "unusable": "基准分数无法使用的样本（%s 个）：",
    "unusable_more": "……另有 %s 个（见 report.json 中的 `headline.problems`）",
    "uncertainty": "不确定性",
    "unc_intro": "各平均值的 95%% 置信区间与标准误（%s，重采样 %s 次，随机种子 %s；平均值的标准误 = 样本标准差 / "
                 "sqrt(n)）。可用 `src.stats.mean_ci` 由 report.json 中的 `pairs` 重新算出。",
    "unc_short": "95%% 置信区间：%s，重采样 %s 次，随机种子 %s；平均值的标准误 = 样本标准差 / sqrt(n)。",
    "macro_note": "宏平均的置信区间在每个类别内部重采样样本（分层自助法）。",
    "dimension": "维度",
    "perf_cols": "阶段|墙钟时间（秒）|模型时间（秒）|样本/秒|每样本 p50（秒）|每样本 p95（秒）|批大小|峰值内存|峰值显存",
    "perf_loads": "加载", "perf_releases": "释放", "perf_swaps": "切换", "perf_moved": "已搬移",
    "perf_peak_rss": "总体峰值内存",
    "perf_note": "批大小：`大小 x 调用次数`；每样本 p50/p95 按线性插值计算。",
}

LABELS = {"en": EN, "zh": ZH}
assert set(EN) == set(ZH), set(EN) ^ set(ZH)


def is_cjk(text: str) -> bool:
    return any("CJK" in unicodedata.name(ch, "") for ch in text)


def resolve_language(setting: str | None, categories: Iterable[str]) -> str:
    """`en` or `zh` for a `report.language` setting; `auto` (or missing) = zh when a category is Chinese."""
    if setting in (None, "auto"):
        return "zh" if any(is_cjk(c) for c in categories) else "en"
    if setting not in LABELS:
        raise ValueError(f"report.language must be one of {', '.join(LANGUAGES)}, got {setting!r}")
    return setting
