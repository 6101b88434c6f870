"""Config: what the user writes (specs), checked before anything heavy loads.

Every swappable component is `class_path` + `init_args` (jsonargparse / LightningCLI convention;
`params` is accepted as a synonym). `init_args` are bound to the constructor's signature, so an
unknown argument or a wrong type is an error that teaches ("did you mean ..."). The resolved config —
paths made absolute, every constructor default filled in — is what a run saves as
`config.resolved.yaml`; loading that file again reproduces the run.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent

# component key -> (base class path, folder scanned for "did you mean")
COMPONENTS = {
    "diffusion_model": ("src.models.base.BaseEditModel", "src/models/diffusion/implementations"),
    "reward_model": ("src.models.base.BaseRewardModel", "src/models/reward/implementations"),
}

# init_args that change how fast a model runs, not what it produces: left out of fingerprints, so a
# run can be resumed with another batch size, device or cache folder.
NON_SEMANTIC_ARGS = frozenset({"batch_size", "device", "cache_dir", "max_concurrency", "timeout_s",
                               "transport_retries", "backoff_s", "max_backoff_s", "api_key_env",
                               # served judges: where the server is and how it is started or checked
                               "base_url", "preflight", "host", "port", "startup_timeout_s",
                               "shutdown_timeout_s", "command", "gpu_memory_utilization"})

DEFAULTS: dict[str, Any] = {
    "benchmark": {"data_path": None, "categories": None, "limit": None, "format": "auto", "image_root": None},
    "prompts": {"default": "auto", "categories": {}, "dir": None, "templates": {}},
    "pipeline": {"mode": "two_stage", "output_dir": "outputs", "png_compress_level": 4, "torch_threads": None,
                 "residency": "auto", "max_batch_size": 64, "batch_grow_after": None,
                 "max_instruction_chars": 8192},
    "report": {"language": "auto"},
    "seed": 0,
    "allow_remote_code": False,
}
SECTION_KEYS = {
    "benchmark": {"data_path", "categories", "limit", "format", "image_root"},
    "prompts": {"default", "categories", "dir", "templates"},
    "pipeline": {"mode", "output_dir", "png_compress_level", "torch_threads", "residency", "max_batch_size",
                 "batch_grow_after", "max_instruction_chars"},
    "report": {"language"},
}
TOP_KEYS = set(DEFAULTS) | set(COMPONENTS)
PIPELINE_MODES = ("two_stage", "interleaved")
RESIDENCY_POLICIES = ("auto", "release", "offload", "resident")


class ConfigError(Exception):
    """A config problem; the message says which file and key, and what would be valid."""


def did_you_mean(word: str, options: list[str] | set[str]) -> str:
    close = difflib.get_close_matches(str(word), sorted(options), n=3, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# ----------------------------------------------------------------------------- components


def known_classes(folder: str) -> list[str]:
    """Class paths defined in a folder of implementations, found by parsing (no heavy imports)."""
    out = []
    for py in sorted((REPO_ROOT / folder).glob("*.py")):
        if py.name.startswith("_"):
            continue
        module = ".".join(Path(folder).parts) + "." + py.stem
        try:
            tree = ast.parse(py.read_text(encoding="utf-8"))
        except SyntaxError:
            continue
        out += [f"{module}.{n.name}" for n in tree.body if isinstance(n, ast.ClassDef) and not n.name.startswith("_")]
    return out


# Top-level packages of this project whose modules a run folder's own config may name (see `CodePolicy`).
PROJECT_PACKAGES = ("src", "tests")


@dataclass
class CodePolicy:
    """Which modules a config may make us import.

    A config the user passes with --config is theirs: it may name any module, except one inside an
    output folder or a run folder (those hold files other people can share). A run folder's own
    `config.resolved.yaml` (a resume without --config) is not trusted to name code: its class paths
    must lie in this project's packages unless the user says `--trust-run-config`. Either way a module
    is located and its source parsed *before* it is imported, so a class path naming something that is
    not a class there (`this.Foo`) is refused without running the module."""

    project_only: bool = False
    forbidden_dirs: tuple[Path, ...] = ()


def _locate_module(module_name: str) -> tuple[Path | None, str | None]:
    """The source file of `module_name`, found without executing it or any parent package that is not
    imported yet: (file, None), (None, missing name) when it does not exist, (None, None) when it is not a
    Python source module (built-in, extension)."""
    import importlib.util
    import sys

    parts = module_name.split(".")
    origin: Path | None = None
    search: list[str] = []
    for i, part in enumerate(parts):
        name = ".".join(parts[: i + 1])
        mod = sys.modules.get(name)
        spec = getattr(mod, "__spec__", None) if mod is not None else None
        if spec is None and i == 0:
            try:
                spec = importlib.util.find_spec(name)  # top level: finds, runs nothing
            except (ImportError, ValueError):
                spec = None
        if spec is not None:
            origin = Path(spec.origin) if spec.origin and spec.has_location else None
            search = list(spec.submodule_search_locations or [])
        else:  # a submodule: look in the parent's folders ourselves (the import system would import parents)
            origin, found, next_search = None, False, []
            for folder in search:
                base = Path(folder) / part
                if (base / "__init__.py").is_file():
                    origin, found, next_search = base / "__init__.py", True, [str(base)]
                    break
                if base.with_suffix(".py").is_file():
                    origin, found, next_search = base.with_suffix(".py"), True, []
                    break
                if base.is_dir():  # a namespace package: keep collecting its folders
                    found = True
                    next_search.append(str(base))
            if not found:
                return None, name
            search = next_search
        if i == len(parts) - 1:
            if spec is None and origin is None and search:
                return None, None  # a namespace package holds no classes
            return (origin if origin is not None and origin.suffix == ".py" else None), None
    return None, None  # pragma: no cover


def _in_run_or_output_folder(path: Path, forbidden: tuple[Path, ...]) -> Path | None:
    for parent in path.parents:
        if (parent / "state.sqlite").exists() or any(parent == f for f in forbidden):
            return parent
    return None


def _defines_name(source_file: Path, name: str) -> bool:
    """Does the module's source bind `name` at top level (class, assignment or import)?"""
    try:
        tree = ast.parse(source_file.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            return True
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            if any((a.asname or a.name.split(".")[0]) == name for a in node.names):
                return True
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
    return False


def import_class(class_path: str, where: str, known: list[str], policy: CodePolicy | None = None) -> type:
    policy = policy or CodePolicy()
    hint = did_you_mean(class_path, known) or (
        "; known classes: " + ", ".join(known) if known else "")
    if not isinstance(class_path, str) or "." not in class_path:
        raise ConfigError(f"{where}.class_path must be a dotted path like 'package.module.Class', got {class_path!r}{hint}")
    module_name, _, cls_name = class_path.rpartition(".")
    if not all(part.isidentifier() for part in class_path.split(".")):
        raise ConfigError(f"{where}.class_path {class_path!r} is not a dotted Python name{hint}")
    # --- locate and vet the module before anything of it runs
    origin, missing = _locate_module(module_name)
    if missing is not None:
        raise ConfigError(f"unknown class_path {class_path!r} at {where}: no module {missing!r}{hint}")
    origin = origin.resolve() if origin is not None else None
    if origin is None:
        raise ConfigError(f"{where}.class_path {class_path!r}: {module_name} is not a Python source module, "
                          f"so it cannot hold a model class{hint}")
    inside = _in_run_or_output_folder(origin, tuple(p.resolve() for p in policy.forbidden_dirs))
    if inside is not None:
        raise ConfigError(f"{where}.class_path {class_path!r} names code inside the run/output folder {inside}; "
                          "code is never imported from there (move the module into your own package)")
    if policy.project_only and not (module_name.split(".")[0] in PROJECT_PACKAGES
                                    and REPO_ROOT in origin.parents):
        raise ConfigError(f"{where}.class_path {class_path!r} is outside this project's packages "
                          f"({', '.join(PROJECT_PACKAGES)}), and a run folder's config is not trusted to name code; "
                          "pass your own config with --config FILE (or --trust-run-config if you made this run)")
    if not _defines_name(origin, cls_name):
        raise ConfigError(f"unknown class_path {class_path!r} at {where}: {module_name} ({origin}) has no class "
                          f"{cls_name!r}{hint}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise ConfigError(f"unknown class_path {class_path!r} at {where}: no module {e.name!r}{hint}") from None
        raise ConfigError(f"{where}.class_path {class_path!r}: importing {module_name} needs the package "
                          f"{e.name!r}, which is not installed") from None
    cls = getattr(module, cls_name, None)
    if not isinstance(cls, type):
        here = [f"{module_name}.{n}" for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name]
        raise ConfigError(f"unknown class_path {class_path!r} at {where}: {module_name} has no class {cls_name!r}"
                          f"{did_you_mean(class_path, sorted(set(here + known)))}")
    return cls


def _type_ok(value: Any, annotation: Any) -> bool:
    """A shallow check of YAML values against a constructor annotation (str, int, float, bool,
    None, unions, list/dict/Literal). Unknown annotations pass."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple) or annotation in (list, tuple):
        return isinstance(value, (list, tuple))
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


@dataclass
class ComponentSpec:
    """A swappable component: what to build and with which constructor arguments."""

    key: str  # "diffusion_model" | "reward_model"
    class_path: str
    init_args: dict[str, Any]  # fully resolved: every constructor default filled in

    def build(self):
        cls = import_class(self.class_path, self.key, [])
        args = dict(self.init_args)
        if args.get("batch_size") == "auto":
            args["batch_size"] = 1  # the pipeline's batcher grows it
        return cls(**args)

    def semantic_args(self) -> dict[str, Any]:
        return {k: v for k, v in self.init_args.items() if k not in NON_SEMANTIC_ARGS}

    def fingerprint(self) -> str:
        return sha256_json({"class_path": self.class_path, "init_args": self.semantic_args()})

    def to_dict(self) -> dict[str, Any]:
        return {"class_path": self.class_path, "init_args": dict(self.init_args)}


ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_PREFIXES = ("sk-", "sk_", "pk-", "rk-", "hf_", "gsk_", "xai-", "AIza", "ghp_", "github_pat_", "glpat-", "AKIA")


def looks_like_secret(value: str) -> bool:
    """A pasted API key rather than the NAME of an environment variable."""
    if not ENV_NAME.fullmatch(value) or value.startswith(KEY_PREFIXES):
        return True
    # long identifiers that mix lower case, upper case and digits are keys, not variable names
    return len(value) >= 24 and any(c.islower() for c in value) and any(c.isupper() for c in value) \
        and any(c.isdigit() for c in value)


def check_api_key_env(init_args: dict, where: str) -> None:
    value = init_args.get("api_key_env")
    if isinstance(value, str) and value and looks_like_secret(value):
        raise ConfigError(f"{where}.init_args.api_key_env must be the NAME of an environment variable (like "
                          "OPENAI_API_KEY), but its value looks like a key itself (not shown). Put the key in an "
                          "environment variable, name that variable here, and revoke the key if this config was "
                          "shared")


# init_args that name a program to start or its arguments (the managed vLLM judge's `command`, `extra_args`)
COMMAND_ARGS = ("command", "extra_args")

# load_kwargs / init_args that make diffusers or transformers run code that ships with a checkpoint
REMOTE_CODE_KWARGS = ("trust_remote_code", "custom_pipeline", "custom_revision")


def remote_code_uses(spec: "ComponentSpec") -> list[str]:
    """Where a component asks for code downloaded with (or named beside) its checkpoint."""
    uses = []
    if spec.init_args.get("trust_remote_code"):
        uses.append(f"{spec.key}.init_args.trust_remote_code")
    for name in ("load_kwargs", "model_kwargs", "processor_kwargs"):
        kwargs = spec.init_args.get(name)
        if isinstance(kwargs, dict):
            uses += [f"{spec.key}.init_args.{name}.{k}" for k in REMOTE_CODE_KWARGS
                     if k in kwargs and kwargs[k] not in (None, False)]
    extra = spec.init_args.get("extra_args")
    if isinstance(extra, list) and any(str(a).split("=")[0] == "--trust-remote-code" for a in extra):
        uses.append(f"{spec.key}.init_args.extra_args --trust-remote-code")
    return uses


def resolve_component(key: str, raw: Any, source: str, policy: CodePolicy | None = None) -> ComponentSpec:
    base_path, folder = COMPONENTS[key]
    where = f"{source}: {key}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a mapping with class_path and init_args, got {type(raw).__name__}")
    raw = dict(raw)
    if "params" in raw and "init_args" in raw:
        raise ConfigError(f"{where} has both init_args and params (a synonym); keep one")
    init_args = raw.pop("init_args", None)
    if init_args is None:
        init_args = raw.pop("params", None)
    init_args = {} if init_args is None else init_args
    class_path = raw.pop("class_path", None)
    if raw:
        extra = sorted(raw)
        raise ConfigError(f"{where}: unknown key(s) {extra}; a component has class_path and init_args (or params)"
                          f"{did_you_mean(extra[0], ['class_path', 'init_args', 'params'])}")
    if class_path is None:
        raise ConfigError(f"{where}: class_path is missing; known classes: {', '.join(known_classes(folder))}")
    if not isinstance(init_args, dict):
        raise ConfigError(f"{where}.init_args must be a mapping, got {type(init_args).__name__}")
    check_api_key_env(init_args, where)  # before anything could echo or store it
    cls = import_class(class_path, where, known_classes(folder), policy)
    base_mod, _, base_name = base_path.rpartition(".")
    base = getattr(importlib.import_module(base_mod), base_name)
    if not issubclass(cls, base):
        raise ConfigError(f"{where}.class_path {class_path!r} is not a {base_name} subclass")
    sig = inspect.signature(cls.__init__)
    params = {n: p for n, p in sig.parameters.items() if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    hints = typing.get_type_hints(cls.__init__) if params else {}
    for name, value in init_args.items():
        if name not in params:
            raise ConfigError(f"{where}.init_args: {class_path.rpartition('.')[2]} has no argument {name!r}"
                              f"{did_you_mean(name, params)} (accepted: {', '.join(params)})")
        ann = hints.get(name, params[name].annotation)
        if name == "batch_size" and value == "auto":
            continue  # the pipeline's AdaptiveBatcher finds the size (starts at 1, doubles while it fits)
        if not _type_ok(value, ann):
            raise ConfigError(f"{where}.init_args.{name} must be {_type_name(ann)}, got {value!r}")
    missing = [n for n, p in params.items() if p.default is p.empty and n not in init_args]
    if missing:
        raise ConfigError(f"{where}.init_args: missing required argument(s) {missing}")
    if policy is not None and policy.project_only:  # a run folder's config may not choose programs to start
        for name in COMMAND_ARGS:
            if name in init_args and name in params and init_args[name] != params[name].default \
                    and init_args[name] != [] and init_args[name] is not None:
                raise ConfigError(f"{where}.init_args.{name} starts a program ({init_args[name]!r}), and a run "
                                  "folder's config is not trusted to choose one: pass your own config with --config "
                                  "FILE (or --trust-run-config if you made this run)")
    resolved = {n: copy.deepcopy(init_args[n]) if n in init_args else copy.deepcopy(p.default) for n, p in params.items()}
    spec = ComponentSpec(key=key, class_path=class_path, init_args=resolved)
    from src.models.base import ModelError

    try:  # constructors only validate and store their arguments: cheap, and it catches bad values now
        spec.build()
    except ModelError as e:
        raise ConfigError(f"{where}.init_args: {e}") from None
    return spec


# ----------------------------------------------------------------------------- whole config


@dataclass
class RunConfig:
    source: str
    data_path: str
    categories: list[str] | None
    limit: int | None
    editor: ComponentSpec
    judge: ComponentSpec
    prompt_default: str
    prompt_categories: dict[str, str]
    mode: str
    output_dir: str
    png_compress_level: int
    seed: int
    torch_threads: int | None = None
    residency: str = "auto"
    max_batch_size: int = 64
    max_instruction_chars: int = 8192
    batch_grow_after: int | None = None
    data_format: str = "auto"  # benchmark.format: src.data.FORMATS or auto
    image_root: str | None = None  # benchmark.image_root: where relative image paths of the benchmark point
    prompt_dir: str | None = None  # a folder of the user's templates, named like the protocol's (docs/protocols.md)
    prompt_templates: dict[str, Any] = field(default_factory=dict)  # protocol template name -> the user's template
    report_language: str = "auto"
    allow_remote_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The resolved config: loading it again gives the same RunConfig."""
        return {
            "benchmark": {"data_path": self.data_path, "categories": self.categories, "limit": self.limit,
                          "format": self.data_format, "image_root": self.image_root},
            "diffusion_model": self.editor.to_dict(),
            "reward_model": self.judge.to_dict(),
            "prompts": {"default": self.prompt_default, "categories": dict(self.prompt_categories),
                        **({"dir": self.prompt_dir} if self.prompt_dir else {}),
                        **({"templates": dict(self.prompt_templates)} if self.prompt_templates else {})},
            "pipeline": {"mode": self.mode, "output_dir": self.output_dir,
                         "png_compress_level": self.png_compress_level, "torch_threads": self.torch_threads,
                         "residency": self.residency, "max_batch_size": self.max_batch_size,
                         "max_instruction_chars": self.max_instruction_chars,
                         "batch_grow_after": self.batch_grow_after},
            "report": {"language": self.report_language},
            "seed": self.seed,
            "allow_remote_code": self.allow_remote_code,
        }

    def fingerprint(self) -> str:
        return sha256_json(self.to_dict())


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set expects key=value (e.g. diffusion_model.init_args.num_inference_steps=4), got {text!r}")
    key, _, value = text.partition("=")
    keys = [k for k in key.strip().split(".")]
    if not all(keys):
        raise ConfigError(f"--set {text!r}: empty key part")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return keys, parsed


def apply_override(raw: dict, keys: list[str], value: Any, text: str) -> None:
    if keys[0] in COMPONENTS and len(keys) >= 2 and keys[1] == "params":
        keys = [keys[0], "init_args", *keys[2:]]
    node = raw
    for k in keys[:-1]:
        if node.get(k) is None:
            node[k] = {}
        if not isinstance(node[k], dict):
            raise ConfigError(f"--set {text!r}: {k!r} is not a mapping")
        node = node[k]
    node[keys[-1]] = value


def _normalise_component(raw: dict, key: str) -> None:
    comp = raw.get(key)
    if isinstance(comp, dict) and "params" in comp and "init_args" not in comp:
        comp["init_args"] = comp.pop("params")


def load_config(path: str | Path, overrides: list[str] = (), *, trusted: bool = True) -> RunConfig:
    """Load, override and check a config. `trusted=False` for a run folder's own config.resolved.yaml:
    its class paths must then lie in this project's packages and it cannot allow remote code."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {source} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {source} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {source} is not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"config file {source} is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source} must be a mapping at the top level, got {type(raw).__name__}")
    for key in COMPONENTS:
        _normalise_component(raw, key)
    for text_ov in overrides:
        keys, value = parse_override(text_ov)
        apply_override(raw, keys, value, text_ov)
    return resolve_config(raw, source, base_dir=path.resolve().parent, trusted=trusted)


def _section(raw: dict, name: str, source: str) -> dict:
    value = raw.get(name)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {name} must be a mapping, got {type(value).__name__}")
    unknown = set(value) - SECTION_KEYS[name]
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(f"{source}: unknown key {name}.{bad}{did_you_mean(bad, SECTION_KEYS[name])} "
                          f"(accepted: {', '.join(sorted(SECTION_KEYS[name]))})")
    return {**DEFAULTS[name], **value}


def _prompt_path(name: Any, base_dir: Path) -> Any:
    """A template folder given as a relative path is made absolute (relative to the config's folder, else to
    the working directory, as before), so a saved config resolves from anywhere; built-in names stay."""
    from src.prompts import BUILTIN_DIR

    if not isinstance(name, str) or not name or name == "auto" or (BUILTIN_DIR / name / "system.j2").is_file():
        return name
    user = Path(name).expanduser()
    for candidate in ((base_dir / user), user):
        if (candidate / "system.j2").is_file():
            return str(candidate.resolve())
    return name


def resolve_config(raw: dict, source: str, base_dir: Path, trusted: bool = True) -> RunConfig:
    unknown = set(raw) - TOP_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise ConfigError(f"{source}: unknown top-level key {bad!r}{did_you_mean(bad, TOP_KEYS)} "
                          f"(accepted: {', '.join(sorted(TOP_KEYS))})")
    bench = _section(raw, "benchmark", source)
    prompts = _section(raw, "prompts", source)
    pipe = _section(raw, "pipeline", source)
    report = _section(raw, "report", source)
    for key in COMPONENTS:
        if key not in raw:
            raise ConfigError(f"{source}: {key} is missing (a mapping with class_path and init_args)")

    data_path = bench["data_path"]
    if not isinstance(data_path, str) or not data_path:
        raise ConfigError(f"{source}: benchmark.data_path must be a path to the benchmark file")
    data_path = str((base_dir / Path(data_path).expanduser()).resolve())  # relative to the config's folder
    categories = bench["categories"]
    if isinstance(categories, str):
        categories = [c.strip() for c in categories.split(",") if c.strip()]
    if categories is not None and (not isinstance(categories, list) or not all(isinstance(c, str) for c in categories)):
        raise ConfigError(f"{source}: benchmark.categories must be a list of category names, got {categories!r}")
    if categories is not None and len(set(categories)) != len(categories):
        raise ConfigError(f"{source}: benchmark.categories names a category twice: {categories}")
    limit = bench["limit"]
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ConfigError(f"{source}: benchmark.limit must be a positive integer or null, got {limit!r}")
    from src.data import FORMATS

    data_format = bench["format"]
    if data_format not in FORMATS + ("auto",):
        raise ConfigError(f"{source}: benchmark.format must be one of auto, {', '.join(FORMATS)}, got "
                          f"{data_format!r}{did_you_mean(str(data_format), FORMATS)}")
    image_root = bench["image_root"]
    if image_root is not None:
        if not isinstance(image_root, str) or not image_root:
            raise ConfigError(f"{source}: benchmark.image_root must be a folder path or null, got {image_root!r}")
        image_root = str((base_dir / Path(image_root).expanduser()).resolve())  # relative to the config's folder

    if pipe["mode"] not in PIPELINE_MODES:
        raise ConfigError(f"{source}: pipeline.mode must be one of {', '.join(PIPELINE_MODES)}, got {pipe['mode']!r}"
                          f"{did_you_mean(pipe['mode'], PIPELINE_MODES)}")
    level = pipe["png_compress_level"]
    if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 9:
        raise ConfigError(f"{source}: pipeline.png_compress_level must be an integer 0-9, got {level!r}")
    threads = pipe["torch_threads"]
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"{source}: pipeline.torch_threads must be a positive integer or null, got {threads!r}")
    if pipe["residency"] not in RESIDENCY_POLICIES:
        raise ConfigError(f"{source}: pipeline.residency must be one of {', '.join(RESIDENCY_POLICIES)}, got "
                          f"{pipe['residency']!r}{did_you_mean(pipe['residency'], RESIDENCY_POLICIES)}")
    for key, minimum, nullable in (("max_batch_size", 1, False), ("batch_grow_after", 1, True),
                                   ("max_instruction_chars", 1, False)):
        value = pipe[key]
        if not (nullable and value is None) and (not isinstance(value, int) or isinstance(value, bool)
                                                 or value < minimum):
            raise ConfigError(f"{source}: pipeline.{key} must be a positive integer{' or null' if nullable else ''}, "
                              f"got {value!r}")
    from src.report_labels import LANGUAGES

    if report["language"] not in LANGUAGES:
        raise ConfigError(f"{source}: report.language must be one of {', '.join(LANGUAGES)}, got "
                          f"{report['language']!r}{did_you_mean(str(report['language']), LANGUAGES)}")
    seed = raw.get("seed", DEFAULTS["seed"])
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    prompt_categories = prompts["categories"] or {}
    if not isinstance(prompt_categories, dict):
        raise ConfigError(f"{source}: prompts.categories must map category names to template names")
    prompt_categories = {cat: _prompt_path(name, base_dir) for cat, name in prompt_categories.items()}
    prompts["categories"] = prompt_categories  # later checks see the resolved folders too
    prompts["default"] = _prompt_path(prompts["default"], base_dir)
    allow_remote_code = raw.get("allow_remote_code", False)
    if not isinstance(allow_remote_code, bool):
        raise ConfigError(f"{source}: allow_remote_code must be true or false, got {allow_remote_code!r}")
    from src.prompts import PromptError, template_for_category

    try:  # every template named must exist now, not after an hour of editing
        for cat in prompt_categories:
            template_for_category(cat, prompt_categories, prompts["default"])
        if prompts["default"] != "auto":
            template_for_category("", {}, prompts["default"])
    except PromptError as e:
        raise ConfigError(f"{source}: prompts: {e}") from None
    output_dir = str(pipe["output_dir"])
    policy = CodePolicy(project_only=not trusted,
                        forbidden_dirs=(Path(output_dir).expanduser().resolve(), REPO_ROOT / "outputs"))
    judge = resolve_component("reward_model", raw["reward_model"], source, policy)
    prompt_dir, prompt_templates = _protocol_prompts(prompts, judge, source, base_dir)
    editor = resolve_component("diffusion_model", raw["diffusion_model"], source, policy)
    remote = remote_code_uses(editor) + remote_code_uses(judge)
    if remote and not allow_remote_code:
        raise ConfigError(f"{source}: {', '.join(remote)} makes the model run code that comes with the checkpoint, "
                          "not with this project; set `allow_remote_code: true` at the top level of your config "
                          "if you trust it (the report records it)")
    if remote and not trusted:
        raise ConfigError(f"{source}: this run folder's config allows remote code ({', '.join(remote)}); a run "
                          "folder is not trusted to allow that: pass your own config with --config FILE "
                          "(or --trust-run-config if you made this run)")
    return RunConfig(
        source=source,
        data_path=data_path,
        categories=categories,
        limit=limit,
        data_format=data_format,
        image_root=image_root,
        editor=editor,
        judge=judge,
        prompt_default=prompts["default"],
        prompt_categories=dict(prompt_categories),
        mode=pipe["mode"],
        output_dir=output_dir,
        png_compress_level=level,
        seed=seed,
        torch_threads=threads,
        residency=pipe["residency"],
        max_batch_size=pipe["max_batch_size"],
        max_instruction_chars=pipe["max_instruction_chars"],
        batch_grow_after=pipe["batch_grow_after"],
        prompt_dir=prompt_dir,
        prompt_templates=prompt_templates,
        report_language=report["language"],
        allow_remote_code=allow_remote_code,
    )


def _protocol_prompts(prompts: dict, judge: ComponentSpec, source: str, base_dir: Path) -> tuple[str | None, dict]:
    """`prompts.dir` / `prompts.templates`: the user's own templates for the judge protocol's queries,
    paths made absolute; each one is loaded and checked now (placeholders, reply keys)."""
    from src.prompts import PromptError
    from src.scoring.judging import absolute_ref, check_category_templates, check_prompt_config

    templates = prompts.get("templates") or {}
    if not isinstance(templates, dict):
        raise ConfigError(f"{source}: prompts.templates must map a protocol's template names to the user's templates")
    prompt_dir = prompts.get("dir")
    if prompt_dir is not None and not isinstance(prompt_dir, str):
        raise ConfigError(f"{source}: prompts.dir must be a folder path, got {prompt_dir!r}")
    prompt_dir = str((base_dir / Path(prompt_dir).expanduser()).resolve()) if prompt_dir else None
    templates = {str(k): absolute_ref(v, base_dir) for k, v in templates.items()}
    try:
        check_prompt_config(judge.init_args.get("protocol"), templates, prompt_dir)
        check_category_templates([*(prompts.get("categories") or {}).values(), prompts.get("default") or "auto"])
    except PromptError as e:
        raise ConfigError(f"{source}: prompts: {e}") from None
    return prompt_dir, templates


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
