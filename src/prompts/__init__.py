"""Judge prompt templates (Jinja2, plain text).

A template is a folder with `system.j2` and `user.j2`. Built-in templates live in `templates/`: the
general `default`, and one per category of the user's benchmark, each with criteria for that kind of
edit (物理 -> physics, 环境 -> environment, 社会 -> social, 因果 -> causal, 指代 -> reference). A
template name may also be the path of a user folder holding the two files (relative to the working
directory), so users can bring their own prompts without touching the code.

Variables (`template_variables`, `KNOWN_VARIABLES`): `instruction`, `description` (may be None),
`category`, `pair_id`, `metadata` (every original field of the pair), `image_roles`, and the shortcuts
`explanation`, `reference`, `edit_type`. Rendering uses StrictUndefined, so a misspelt variable is an
error rather than an empty string; the config check refuses unknown variables before any model loads.
Templates may also come from the user's files in other shapes (plain text with `<instruction>`, JSON
keys, Python string constants): `load_template`, and docs/protocols.md. Prompts are plain
text: no autoescape. `template_hash` is the sha256 of `system.j2` + NUL + `user.j2` *as rendered
sources including what they include/extend*, so any change of the text a judge sees gives a new hash.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError, meta, nodes

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


class PromptError(ValueError):
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


def _source_with_parents(env: Environment, name: str, seen: set[str] | None = None,
                         files: list[str] | None = None) -> str:
    """The template's source followed by the sources of everything it includes or extends (their file
    paths are appended to `files`)."""
    seen = seen if seen is not None else set()
    if name in seen:
        return ""
    seen.add(name)
    source, filename = env.loader.get_source(env, name)[:2]
    if files is not None and filename:
        files.append(filename)
    refs = sorted(r for r in meta.find_referenced_templates(env.parse(source)) if r)
    return source + "".join("\0" + _source_with_parents(env, r, seen, files) for r in refs)


def _names_with_parents(env: Environment, name: str, seen: set[str] | None = None) -> list[str]:
    seen = seen if seen is not None else set()
    if name in seen:
        return []
    seen.add(name)
    refs = sorted(r for r in meta.find_referenced_templates(env.parse(env.loader.get_source(env, name)[0])) if r)
    return [name] + [n for r in refs for n in _names_with_parents(env, r, seen)]


def _files_stamp(files: list[str]) -> tuple | None:
    try:
        return tuple((f, os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in files)
    except OSError:
        return None


# (root, folder) -> (the files' (path, mtime_ns, size), hash): render_prompt runs once per pair, and parsing
# the template and its includes to hash them cost ~1 ms each time; a changed file is re-read.
_HASH_CACHE: dict[tuple[str, str], tuple[tuple, str]] = {}


def template_hash(name: str) -> str:
    root, folder = _resolve(name)
    key = (str(root), folder)
    cached = _HASH_CACHE.get(key)
    if cached is not None and _files_stamp([f for f, _, _ in cached[0]]) == cached[0]:
        return cached[1]
    env = _env(str(root))

    def read() -> tuple[str, list[str]]:
        files: list[str] = []
        text = (_source_with_parents(env, f"{folder}/system.j2", files=files) + "\0"
                + _source_with_parents(env, f"{folder}/user.j2", files=files))
        return text, files

    text, files = read()
    stamp = _files_stamp(files)
    # cached only if a second read gives the same text and stamps (no file changed while it was read)
    if stamp is not None and read()[0] == text and _files_stamp(files) == stamp:
        _HASH_CACHE[key] = (stamp, hashlib.sha256(text.encode("utf-8")).hexdigest())
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


# ============================================================================ variables and template sources

#: what every judge template may use
KNOWN_VARIABLES = ("instruction", "description", "category", "pair_id", "metadata", "image_roles", "explanation",
                   "reference", "edit_type")


def _first_text(meta: dict, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, str) and value.strip():
            return value
    return None


def template_variables(*, instruction: str, description: str | None = None, category: str = "", pair_id: str = "",
                       metadata: dict | None = None, image_roles=()) -> dict:
    """The variables a judge template is rendered with. Besides the pair's fields and `metadata` (every
    original field of the benchmark), shortcuts for the fields the public benchmarks' judges use:
    `explanation` (KRIS-Bench `explain_en`), `reference` (RISEBench `reference_txt` or `reference`, the
    reference answer as text), `edit_type` (ImgEdit). `image_roles` lists what the judge sees, in order."""
    meta = dict(metadata or {})
    return {"instruction": instruction, "description": description, "category": category, "pair_id": pair_id,
            "metadata": meta, "image_roles": list(image_roles or ()),
            "explanation": _first_text(meta, ("explain_en", "explanation", "explain")),
            "reference": _first_text(meta, ("reference_txt", "reference", "reference_text")),
            "edit_type": meta.get("edit_type")}


# Placeholders of prompt texts that are not Jinja: the official prompt files of the public benchmarks
# write `<instruction>` / `<edit_prompt>` (VIEScore, ImgEdit) or Python format fields `{instruct}`,
# `{explanation}`, `{reference}` (KRIS-Bench, RISEBench), with `{{` / `}}` for literal braces.
ANGLE_PLACEHOLDERS = {"<instruction>": "instruction", "<edit_prompt>": "instruction", "<prompt>": "instruction"}
FORMAT_FIELDS = {"instruct": "instruction", "instruction": "instruction", "edit_prompt": "instruction",
                 "explanation": "explanation", "explain": "explanation", "reference": "reference",
                 "description": "description"}


@dataclass(frozen=True)
class LoadedTemplate:
    """A judge template from anywhere: a built-in or user Jinja folder (`folder`), or text parts read
    from files (`system` / `user`: lists of (kind, text, where), kind = jinja | angle | format)."""

    label: str
    folder: str | None = None
    system: tuple = ()
    user: tuple = ()

    @property
    def hash(self) -> str:
        if self.folder is not None:
            return template_hash(self.folder)
        text = "\0".join(f"{k}\1{t}" for k, t, _ in self.system) + "\0\0" + "\0".join(f"{k}\1{t}" for k, t, _
                                                                                     in self.user)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def source_text(self) -> str:
        """Every text the judge may see (for the reply-schema check)."""
        if self.folder is not None:
            root, folder = _resolve(self.folder)
            env = _env(str(root))
            return _source_with_parents(env, f"{folder}/system.j2") + "\n" + _source_with_parents(env, f"{folder}/user.j2")
        return "\n".join(t for _, t, _ in (*self.system, *self.user))

    def used_variables(self) -> set[str]:
        if self.folder is not None:
            root, folder = _resolve(self.folder)
            env = _env(str(root))
            used: set[str] = set()
            assigned: set[str] = set()  # `{% set %}` in a file that includes another one
            for part in ("system", "user"):
                for name in _names_with_parents(env, f"{folder}/{part}.j2"):
                    tree = env.parse(env.loader.get_source(env, name)[0])
                    used |= meta.find_undeclared_variables(tree)
                    assigned |= {n.name for a in tree.find_all(nodes.Assign) for n in a.find_all(nodes.Name)}
            return used - assigned
        used = set()
        for kind, text, where in (*self.system, *self.user):
            used |= _plain_variables(kind, text, where)
        return used

    def render(self, variables: dict) -> JudgePrompt:
        if self.folder is not None:
            return render_prompt(self.folder, **variables)
        try:
            system = "\n\n".join(_render_part(k, t, w, variables) for k, t, w in self.system).strip()
            user = "\n\n".join(_render_part(k, t, w, variables) for k, t, w in self.user).strip()
        except TemplateError as e:
            raise PromptError(f"prompt template {self.label!r} does not render: {e}") from None
        return JudgePrompt(system=system, user=user, template=self.label, template_hash=self.hash)


def _plain_variables(kind: str, text: str, where: str) -> set[str]:
    if kind == "jinja":
        return set(meta.find_undeclared_variables(Environment(undefined=StrictUndefined).parse(text)))
    if kind == "angle":
        return {var for ph, var in ANGLE_PLACEHOLDERS.items() if ph in text}
    used = set()
    for _, name, _, _ in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in FORMAT_FIELDS:
            known = ", ".join("{" + f + "}" for f in FORMAT_FIELDS)
            raise PromptError(f"{where}: unknown placeholder {{{name}}}{_hint(name, list(FORMAT_FIELDS))} "
                              f"(known: {known})")
        used.add(FORMAT_FIELDS[name])
    return used


def _hint(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _render_part(kind: str, text: str, where: str, variables: dict) -> str:
    if kind == "jinja":
        return Environment(undefined=StrictUndefined, autoescape=False, trim_blocks=True).from_string(text).render(
            **variables)
    if kind == "angle":
        for ph, var in ANGLE_PLACEHOLDERS.items():
            text = text.replace(ph, str(variables.get(var) or ""))
        return text
    values = {f: "" if variables.get(v) is None else str(variables.get(v)) for f, v in FORMAT_FIELDS.items()}
    return text.format_map(values)


def _read(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PromptError(f"{where}: file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise PromptError(f"{where}: cannot read {path} ({e})") from None


def _python_string(path: Path, variable: str, where: str) -> str:
    """The string assigned to `variable` in a Python file, read with `ast` — the file is never run."""
    import ast

    try:
        tree = ast.parse(_read(path, where), filename=str(path))
    except SyntaxError as e:
        raise PromptError(f"{where}: {path} is not valid Python ({e.msg}, line {e.lineno})") from None
    names = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names.append(target.id)
                    if target.id == variable:
                        try:
                            value = ast.literal_eval(node.value)
                        except ValueError:
                            raise PromptError(f"{where}: {path}: {variable} is not a plain string constant") from None
                        if not isinstance(value, str):
                            raise PromptError(f"{where}: {path}: {variable} is a {type(value).__name__}, not a string")
                        return value
    raise PromptError(f"{where}: {path} assigns no {variable!r}{_hint(variable, names)}")


def _part(spec, base: Path, where: str) -> list[tuple[str, str, str]]:
    if isinstance(spec, list):
        return [p for item in spec for p in _part(item, base, where)]
    if isinstance(spec, str):
        path = (base / Path(spec).expanduser()).resolve()
        return [("jinja" if path.suffix == ".j2" else "angle", _read(path, where), f"{where} ({path})")]
    if isinstance(spec, dict) and "file" in spec:
        path = (base / Path(str(spec["file"])).expanduser()).resolve()
        extra = set(spec) - {"file", "key", "variable"}
        if extra or ("key" in spec) == ("variable" in spec):
            raise PromptError(f"{where}: a file part is {{file: PATH, key: NAME}} (a JSON object's entry) or "
                              f"{{file: PATH, variable: NAME}} (a string in a Python file)")
        if "key" in spec:
            import json

            try:
                data = json.loads(_read(path, where))
            except ValueError as e:
                raise PromptError(f"{where}: {path} is not valid JSON ({e})") from None
            if not isinstance(data, dict) or spec["key"] not in data or not isinstance(data[spec["key"]], str):
                keys = list(data) if isinstance(data, dict) else []
                raise PromptError(f"{where}: {path} has no text under key {spec['key']!r}"
                                  f"{_hint(str(spec['key']), keys)}")
            return [("angle", data[spec["key"]], f"{where} ({path} [{spec['key']!r}])")]
        text = _python_string(path, str(spec["variable"]), where)
        # a string the official script fills with str.format ({instruct}), or one with <instruction> markers
        kind = "format" if re.search(r"\{(?:%s)\}" % "|".join(FORMAT_FIELDS), text) else "angle"
        return [(kind, text, f"{where} ({path}: {spec['variable']})")]
    raise PromptError(f"{where}: expected a file path, {{file, key}}, {{file, variable}} or a list of them, "
                      f"got {spec!r}")


def load_template(ref, base_dir: str | Path | None = None, where: str = "prompt template") -> LoadedTemplate:
    """A template reference from the config: a built-in name or a folder (system.j2 + user.j2, Jinja),
    a single file (`.j2`: Jinja; anything else: plain text with `<instruction>` placeholders), or a
    mapping {system: PART, user: PART} whose parts are paths, {file, key} (JSON) or {file, variable}
    (a string constant in a Python file, read without running it), or lists of those."""
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    if isinstance(ref, str):
        if (BUILTIN_DIR / ref / "system.j2").is_file() and "/" not in ref and "\\" not in ref:
            return LoadedTemplate(label=ref, folder=ref)
        path = (base / Path(ref).expanduser()).resolve()
        if path.is_dir():
            if not ((path / "system.j2").is_file() and (path / "user.j2").is_file()):
                raise PromptError(f"{where}: folder {path} needs system.j2 and user.j2")
            return LoadedTemplate(label=str(path), folder=str(path))
        if path.is_file():
            return LoadedTemplate(label=str(path), user=tuple(_part(str(path), base, where)))
        _resolve(ref)  # the unknown-template error with its did-you-mean
    if isinstance(ref, dict) and "user" in ref and set(ref) <= {"system", "user"}:
        system = tuple(_part(ref["system"], base, where)) if ref.get("system") is not None else ()
        user = tuple(_part(ref["user"], base, where))
        label = " + ".join(w.split(" (", 1)[-1].rstrip(")") for _, _, w in (*system, *user))
        return LoadedTemplate(label=label, system=system, user=user)
    raise PromptError(f"{where}: expected a template name, a folder, a file or {{system: ..., user: ...}}, got {ref!r}")


def template_ref(name: str, overrides: dict | None = None, prompt_dir: str | None = None):
    """Which template a protocol's built-in template `name` resolves to: `prompts.templates[name]`,
    else `<prompts.dir>/<name>` (a folder, or `<name>.j2` / `<name>.txt`), else the built-in one."""
    if overrides and name in overrides:
        return overrides[name]
    if prompt_dir:
        folder = Path(prompt_dir) / name
        for candidate in (folder, folder.with_name(name + ".j2"), folder.with_name(name + ".txt")):
            if candidate.exists():
                return str(candidate)
    return name


def check_template(loaded: LoadedTemplate, needs: tuple[str, ...], reply_names: tuple[str, ...], what: str,
                   any_reply_name: bool = False) -> None:
    """Config-time checks: only known variables, the required ones present, the reply keys mentioned."""
    used = loaded.used_variables()
    unknown = sorted(used - set(KNOWN_VARIABLES))
    if unknown:
        raise PromptError(f"{what}: {loaded.label}: unknown variable {unknown[0]!r}"
                          f"{_hint(unknown[0], list(KNOWN_VARIABLES))} (known: {', '.join(KNOWN_VARIABLES)})")
    missing = [n for n in needs if n not in used]
    if missing:
        raise PromptError(f"{what}: {loaded.label} never uses the placeholder for {', '.join(missing)} (Jinja "
                          f"{{{{ {missing[0]} }}}}" + (", or <instruction> / {instruct} in a plain text)"
                                                       if missing[0] == "instruction" else f", or {{{missing[0]}}})"))
    text = re.sub(r"[\W_]+", " ", loaded.source_text().lower())
    absent = [n for n in reply_names if re.sub(r"[\W_]+", " ", n.lower()).strip() not in text]
    if (any_reply_name and len(absent) == len(reply_names)) or (not any_reply_name and absent):
        raise PromptError(f"{what}: {loaded.label} never mentions {' or '.join(map(repr, absent))}, which the reply "
                          f"must hold for the protocol to read it")
