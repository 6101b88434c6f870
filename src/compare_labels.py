"""Labels of the compare, judges-index and align outputs, in English and Chinese.

The language follows the report's rule (src/report_labels.py): `auto` = Chinese when a category name is
Chinese. The wording is this project's own; data (instructions, ids, category names) is never translated.
Strings with %s are filled with Jinja's `format` filter.
"""

from __future__ import annotations

EN = {
    "html_lang": "en",
    # compare
    "cmp_title": "Comparison of %s runs",
    "cmp_intro": "Paired comparison on the **%s common pairs** (scored by every run, same input image and instruction).",
    "cmp_ci": "Means with 95%% CIs (%s, seed %s, %s resamples); Δ is run − best on the same pairs, with its CI, "
              "a paired-bootstrap p-value and a Wilcoxon signed-rank p-value.",
    "cmp_own": "“own mean” is each run's mean over all the pairs it scored — unpaired, for contrast only.",
    "warnings": "Warnings", "runs": "Runs", "run": "run", "editor": "editor", "judge": "judge",
    "protocol": "protocol", "pairs": "pairs", "scored": "scored", "coverage": "coverage", "common": "common",
    "common_share": "common / scored", "board_line": "Common pairs: %s of %s.", "best_line": "Best: **%s**.",
    "rank": "rank", "mean_common": "mean (common)", "ci95": "95% CI", "delta": "Δ vs best", "delta_ci": "Δ 95% CI",
    "p_boot": "p (bootstrap)", "p_wil": "p (Wilcoxon)", "own": "own mean (n)", "overall": "overall",
    "overall_title": "Overall", "leaderboards": "Leaderboards", "pairs_title": "Pairs", "category": "category",
    "all": "all", "common_only": "common pairs only", "search": "search", "search_ph": "instruction or pair id",
    "pair": "pair", "instruction": "instruction", "original": "original", "not_common": "not common",
    "no_original": "not in the run folders", "count": "%s of %s pairs", "small_common": "common of",
    "cmp_recompute": "Every number is recomputable from `pairs` in compare.json.",
    # judges index
    "ix_title": "Judges of this run",
    "ix_intro": "Each judge's report is in its own folder (`<judge model>-<8 hex of its scoring fingerprint>`); "
                "the run folder's top-level report is the latest judge's (**%s**).",
    "model": "model", "class": "class", "mean": "mean", "report": "report", "agreement": "Agreement",
    "ix_agree": "On the pairs both judges scored (the same edits). Correlations with scipy p-values and 95%% CIs "
                "(%s, pairs resampled together, seed %s, %s resamples). Disagreement: absolute difference of the "
                "pair's percentile ranks (average ties) among each judge's scores of the common pairs.",
    "vs": "vs", "n_pairs": "%s pairs", "disagree_title": "Pairs where they disagree most:", "edited": "edited",
    "disagreement": "disagreement", "one_judge": "One judge only: no agreement to compute.",
    # align
    "al_title": "Judge–human alignment: %s", "ratings": "ratings", "scoring_fp": "scoring fingerprint",
    "al_corr": "correlations: scipy.stats (Spearman, Kendall tau-b, Pearson) with 95%% CIs (%s, pairs resampled "
               "together, seed %s, %s resamples)",
    "al_jh": "judge vs humans: the judge's value against the mean rating of the raters of each pair",
    "al_hh": "human vs human (the ceiling): every two raters on the pairs both rated; averaging: Fisher z, "
             "tanh(mean(arctanh(r))), over rater pairs and over categories",
    "al_problems": "Rows not used (%s)",
    "al_field": "Judge field: `%s`; %s pairs rated and scored (%s rated pairs not scored by the judge).",
    "group": "group", "raters": "raters", "sp_jh": "Spearman judge–human", "kt_jh": "Kendall judge–human",
    "sp_hh": "Spearman human–human", "kt_hh": "Kendall human–human", "pooled": "overall (pooled)",
    "fisher_row": "mean over categories (Fisher z)",
    "al_recompute": "Every number is recomputable from `pairs_used` in align.json.",
}

ZH = {
    "html_lang": "zh",
    "cmp_title": "%s 次运行的比较",
    "cmp_intro": "在 **%s 个共同样本对** 上做配对比较（每次运行都已评分，且输入图像与指令相同）。",
    "cmp_ci": "均值附 95%% 置信区间（%s，随机种子 %s，重采样 %s 次）；Δ = 该运行 − 最佳运行（同一批样本对），"
              "附其置信区间、配对自助法 p 值与 Wilcoxon 符号秩检验 p 值。",
    "cmp_own": "“自身均值”是该运行在其全部已评分样本对上的均值——未配对，仅供对照。",
    "warnings": "警告", "runs": "运行", "run": "运行", "editor": "编辑模型", "judge": "评分模型",
    "protocol": "评分协议", "pairs": "样本对", "scored": "已评分", "coverage": "覆盖率", "common": "共同",
    "common_share": "共同 / 已评分", "board_line": "共同样本对：%s / %s。", "best_line": "最佳：**%s**。",
    "rank": "名次", "mean_common": "均值（共同）", "ci95": "95% 置信区间", "delta": "Δ（相对最佳）",
    "delta_ci": "Δ 的 95% 置信区间", "p_boot": "p（自助法）", "p_wil": "p（Wilcoxon）", "own": "自身均值（n）",
    "overall": "总体", "overall_title": "总体", "leaderboards": "排行榜", "pairs_title": "样本对", "category": "类别",
    "all": "全部", "common_only": "仅共同样本对", "search": "搜索", "search_ph": "指令或样本对 ID",
    "pair": "样本对", "instruction": "指令", "original": "原图", "not_common": "非共同",
    "no_original": "运行目录中没有原图", "count": "%s / %s 个样本对", "small_common": "个共同，共",
    "cmp_recompute": "所有数字都可由 compare.json 中的 `pairs` 重新算出。",
    "ix_title": "本次运行的评分模型",
    "ix_intro": "每个评分模型的报告位于各自的目录（`<评分模型名>-<评分指纹前 8 位十六进制>`）；"
                "运行目录顶层的报告属于最近一次的评分模型（**%s**）。",
    "model": "模型", "class": "类", "mean": "均值", "report": "报告", "agreement": "一致性",
    "ix_agree": "基于两个评分模型都评过的样本对（同一批编辑结果）。相关系数附 scipy 的 p 值与 95%% 置信区间"
                "（%s，样本对成对重采样，随机种子 %s，重采样 %s 次）。分歧度：该样本对在两个评分模型各自"
                "打分中的百分位名次（并列取平均）之差的绝对值。",
    "vs": "对比", "n_pairs": "%s 个样本对", "disagree_title": "分歧最大的样本对：", "edited": "编辑结果",
    "disagreement": "分歧度", "one_judge": "只有一个评分模型：无需计算一致性。",
    "al_title": "评分模型与人工评分的一致性：%s", "ratings": "人工评分", "scoring_fp": "评分指纹",
    "al_corr": "相关系数：scipy.stats（Spearman、Kendall tau-b、Pearson），附 95%% 置信区间（%s，样本对成对重采样，"
               "随机种子 %s，重采样 %s 次）",
    "al_jh": "评分模型对人工：评分模型的分数与每个样本对各评分人平均分之间的相关",
    "al_hh": "人工对人工（上限）：任意两位评分人在共同评过的样本对上的相关；平均方法：Fisher z，"
             "tanh(mean(arctanh(r)))，先在评分人两两之间、再在类别之间平均",
    "al_problems": "未使用的行（%s）",
    "al_field": "评分模型取值：`%s`；%s 个样本对既有人工评分又有模型评分（%s 个人工评过的样本对没有模型评分）。",
    "group": "分组", "raters": "评分人", "sp_jh": "Spearman 模型–人工", "kt_jh": "Kendall 模型–人工",
    "sp_hh": "Spearman 人工–人工", "kt_hh": "Kendall 人工–人工", "pooled": "总体（合并）",
    "fisher_row": "类别平均（Fisher z）",
    "al_recompute": "所有数字都可由 align.json 中的 `pairs_used` 重新算出。",
}

LABELS = {"en": EN, "zh": ZH}
assert set(EN) == set(ZH), set(EN) ^ set(ZH)


def language(setting: str | None, categories) -> str:
    """`en` / `zh` for `--language auto|en|zh` (auto: Chinese when a category is)."""
    from src.report_labels import resolve_language

    return resolve_language(setting, categories)
