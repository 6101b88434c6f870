"""What the judge is asked for each pair: the protocol(s), their templates (built-in or the user's own
prompt files), rendered with the pair's fields, metadata and extra images.

`scoring_setup` is called once per run (before any model loads) and fingerprints everything that
reaches the judge; `ScoringSetup.prompts_for(pair)` renders one pair's prompts, one per query its
protocol asks it. Config-time checks of the user's templates live in `check_prompt_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from src.models.base import JudgePrompt
from src.prompts import (BUILTIN_DIR, KNOWN_VARIABLES, LoadedTemplate, PromptError, check_template, load_template,
                         template_for_category, template_hash, template_ref, template_variables)
from src.scoring.protocols import (PairContext, Protocol, ProtocolError, ProtocolSet, Query, protocol_for,
                                   resolve_protocols, resolve_roles)


def _sha(obj: Any) -> str:
    from src.config import sha256_json

    return sha256_json(obj)


@dataclass
class ScoringSetup:
    """What this run's scores depend on, per category: the prompt templates the protocol uses."""

    templates: dict[str, str]  # category -> its own prompt template (the category_0to10 query)
    labels: dict[str, str]  # category -> every template the protocol asks, e.g. "viescore_sc+viescore_pq"
    hashes: dict[str, str]  # category -> hash of those templates' text
    fingerprint: str  # the judge (class + semantic init_args) and all of the above
    protocols: Protocol | ProtocolSet | None = None
    loaded: dict[str, LoadedTemplate] = field(default_factory=dict)  # a protocol's template name -> its source

    def _queries(self, pair) -> tuple[Query, ...]:
        roles = tuple(getattr(pair, "image_roles", None) or ())
        ctx = PairContext(pair.category, dict(pair.metadata or {}), roles)
        try:
            return protocol_for(self.protocols, pair.category).queries_for(ctx)
        except ProtocolError as e:
            raise ValueError(str(e)) from None

    def images_for(self, pair) -> dict:
        """The pair's extra images its queries show the judge, decoded (only those: an unused extra image
        is never read). Raises InvalidPair for an unreadable one, ValueError for a missing one."""
        if self.protocols is None:
            return {}
        available = tuple(getattr(pair, "image_roles", None) or ())
        needed = {r for q in self._queries(pair) for r in resolve_roles(q.images, available)} - {"original", "edited"}
        return {role: pair.load_named_image(role) for role in available if role in needed}

    def prompts_for(self, pair) -> dict[str, JudgePrompt]:
        """Every query's prompt for this pair (queries of the category's own template excluded: that is
        `ScoreRequest.prompt`). Raises ValueError naming what the pair lacks."""
        if self.protocols is None:
            return {}
        roles = tuple(getattr(pair, "image_roles", None) or ())
        queries = self._queries(pair)
        out = {}
        for query in queries:
            if query.template is None:
                continue
            variables = template_variables(instruction=pair.instruction, description=pair.description,
                                           category=pair.category, pair_id=pair.pair_id, metadata=pair.metadata,
                                           image_roles=resolve_roles(query.images, roles))
            lacking = [n for n in query.needs if variables.get(n) in (None, "")]
            if lacking:
                raise ValueError(f"the judge's {query.name!r} query needs the pair's {lacking[0]} "
                                 f"({_FIELDS.get(lacking[0], lacking[0])}), which is missing or empty")
            try:
                out[query.name] = self.loaded[query.template].render(variables)
            except PromptError as e:
                raise ValueError(str(e)) from None
        return out


_FIELDS = {"explanation": "metadata field explain_en", "reference": "metadata field reference_txt or reference"}


def _protocol_list(protocols: Protocol | ProtocolSet) -> list[Protocol]:
    return protocols.all() if isinstance(protocols, ProtocolSet) else [protocols]


def scoring_setup(cfg, bench) -> ScoringSetup:
    protocols = resolve_protocols(cfg.judge.init_args.get("protocol") or "category_0to10")
    overrides = getattr(cfg, "prompt_templates", None) or {}
    prompt_dir = getattr(cfg, "prompt_dir", None)
    loaded: dict[str, LoadedTemplate] = {}
    for protocol in _protocol_list(protocols):
        for query in protocol.queries:
            if query.template is not None and query.template not in loaded:
                loaded[query.template] = load_template(template_ref(query.template, overrides, prompt_dir))
    templates = {cat: template_for_category(cat, cfg.prompt_categories, cfg.prompt_default) for cat in bench.categories}
    labels, hashes = {}, {}
    for cat, own in templates.items():
        protocol = protocol_for(protocols, cat)
        names = list(dict.fromkeys(q.template or own for q in protocol.queries))
        labels[cat] = "+".join(loaded[n].label if n in loaded else n for n in names)
        digests = [loaded[n].hash if n in loaded else template_hash(n) for n in names]
        hashes[cat] = digests[0] if len(digests) == 1 else _sha(digests)
    fp = _sha({"judge": cfg.judge.fingerprint(), "templates": labels, "template_hashes": hashes})
    return ScoringSetup(templates, labels, hashes, fp, protocols, loaded)


def check_prompt_config(protocol_spec: Any, overrides: dict, prompt_dir: str | None) -> None:
    """At config time: every template the judge's protocol(s) will use loads, uses only known variables
    and the ones its query needs, and mentions the reply keys the protocol parses. PromptError names
    the template, the file and what is missing."""
    try:
        protocols = resolve_protocols(protocol_spec or "category_0to10")
    except ProtocolError:
        return  # the judge's constructor reports it
    known = {q.template for p in _protocol_list(protocols) for q in p.queries if q.template}
    for name in overrides or {}:
        if name not in known:
            import difflib

            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PromptError(f"templates: {name!r} is no template of the judge's protocol{hint} "
                              f"(its templates: {', '.join(sorted(known)) or 'none'})")
    if prompt_dir and not Path(prompt_dir).is_dir():
        raise PromptError(f"dir: {prompt_dir} is not a folder")
    seen = set()
    for protocol in _protocol_list(protocols):
        for query in protocol.queries:
            if query.template is None or (query.template, query.name) in seen:
                continue
            seen.add((query.template, query.name))
            ref = template_ref(query.template, overrides, prompt_dir)
            what = f"template {query.template!r} (protocol {protocol.name!r}, query {query.name!r})"
            loaded = load_template(ref, where=what)
            check_template(loaded, query.needs, query.reply_names(), what,
                           any_reply_name=len(query.dims) == 1 and not query.list_key)


def check_category_templates(names: list[str]) -> None:
    """The per-category templates (prompts.categories / prompts.default) use only known variables."""
    for name in names:
        if name == "auto":
            continue
        loaded = load_template(name, where=f"template {name!r}")
        unknown = sorted(loaded.used_variables() - set(KNOWN_VARIABLES))
        if unknown:
            raise PromptError(f"template {name!r}: unknown variable {unknown[0]!r} (known: {', '.join(KNOWN_VARIABLES)})")


def absolute_ref(ref: Any, base: Path) -> Any:
    """A template reference with its paths made absolute (relative to the config file's folder), so a
    resumed run finds the same files from any working directory. Built-in names stay names."""
    if isinstance(ref, str):
        if (BUILTIN_DIR / ref / "system.j2").is_file() and "/" not in ref:
            return ref
        return str((base / Path(ref).expanduser()).resolve())
    if isinstance(ref, list):
        return [absolute_ref(r, base) for r in ref]
    if isinstance(ref, dict):
        return {k: (str((base / Path(str(v)).expanduser()).resolve()) if k == "file"
                    else absolute_ref(v, base) if k in ("system", "user") else v) for k, v in ref.items()}
    return ref


__all__ = ["ScoringSetup", "scoring_setup", "check_prompt_config", "check_category_templates", "absolute_ref"]
