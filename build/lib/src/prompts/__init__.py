"""Judge prompt templates (Jinja2, plain text).

A template is a folder with `system.j2` and `user.j2`. Built-in templates live in `templates/`: the
general `default`, and one per category of the user's benchmark, each with criteria for that kind of
edit (物理 -> physics, 环境 -> environment, 社会 -> social, 因果 -> causal, 指代 -> reference). A
template name may also be the path of a user folder holding the two files (relative to the working
directory), so users can bring their own prompts without touching the code.

Variables: `instruction`, `description` (may be None), `category`, `pair_id`. Rendering uses
StrictUndefined, so a misspelt variable is an error rather than an empty string. Prompts are plain
text: no autoescape. `template_hash` is the sha256 of `system.j2` + NUL + `user.j2` *as rendered
sources including what they include/extend*, so any change of the text a judge sees gives a new hash.
"""

from __future__ import annotations

import difflib
import hashlib
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, meta

from src.models.base import JudgePrompt

BUILTIN_DIR = Path(__file__).parent / "templates"

# category name in the user's benchmark -> built-in template
CATEGORY_TEMPLATES = {
    "物理": "physics",
    "环境": "environment",
    "社会": "social",
    "因果": "causal",
    "指代": "reference",
}


class PromptError(Exception):
    """An unknown template, or one that does not render."""


def available_templates() -> list[str]:
    return sorted(p.name for p in BUILTIN_DIR.iterdir() if (p / "system.j2").is_file() and (p / "user.j2").is_file())


def template_for_category(category: str, overrides: dict[str, str] | None = None, default: str = "auto") -> str:
    """The template a category uses: an explicit override, else the built-in one for that category name
    (with `default: auto`), else `default` (the config's `prompts.default`, or the built-in "default")."""
    name = (overrides or {}).get(category)
    if name is None:
        name = CATEGORY_TEMPLATES.get(category, "default") if default == "auto" else default
    _resolve(name)  # fail now, with the list of names, if it does not exist
    return name


def _resolve(name: str) -> tuple[Path, str]:
    """(root folder for the Jinja loader, template folder name relative to it)."""
    if not isinstance(name, str) or not name:
        raise PromptError(f"a template name must be a non-empty string, got {name!r}")
    if (BUILTIN_DIR / name / "system.j2").is_file() and "/" not in name and "\\" not in name and name not in (".", ".."):
        return BUILTIN_DIR, name
    user = Path(name).expanduser()
    if (user / "system.j2").is_file() and (user / "user.j2").is_file():
        return user.resolve().parent, user.resolve().name
    names = available_templates()
    hint = difflib.get_close_matches(name, names, n=2, cutoff=0.5)
    extra = f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else ""
    raise PromptError(f"unknown prompt template {name!r}{extra} (built-in: {', '.join(names)}; or a folder "
                      "with system.j2 and user.j2)")


@lru_cache(maxsize=64)
def _env(root: str) -> Environment:
    # user templates may include/extend the built-in ones ("default/user.j2")
    return Environment(loader=FileSystemLoader([root, str(BUILTIN_DIR)]), undefined=StrictUndefined,
                       autoescape=False, keep_trailing_newline=False, trim_blocks=True)


def _source_with_parents(env: Environment, name: str, seen: set[str] | None = None) -> str:
    """The template's source followed by the sources of everything it includes or extends."""
    seen = seen if seen is not None else set()
    if name in seen:
        return ""
    seen.add(name)
    source = env.loader.get_source(env, name)[0]
    refs = sorted(r for r in meta.find_referenced_templates(env.parse(source)) if r)
    return source + "".join("\0" + _source_with_parents(env, r, seen) for r in refs)


def template_hash(name: str) -> str:
    root, folder = _resolve(name)
    env = _env(str(root))
    text = _source_with_parents(env, f"{folder}/system.j2") + "\0" + _source_with_parents(env, f"{folder}/user.j2")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def render_prompt(template: str, **variables) -> JudgePrompt:
    root, folder = _resolve(template)
    env = _env(str(root))
    variables.setdefault("description", None)
    try:
        system = env.get_template(f"{folder}/system.j2").render(**variables).strip()
        user = env.get_template(f"{folder}/user.j2").render(**variables).strip()
    except TemplateError as e:
        raise PromptError(f"prompt template {template!r} does not render: {e}") from None
    return JudgePrompt(system=system, user=user, template=template, template_hash=template_hash(template))
