"""Experiments config (YAML): models, modes, attitudes, replicates -> arms, validated."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inference.attitudes import ATTITUDES
from inference.prompts import MODES

EXPERIMENTS_ENV = "STRAT_LLM_EXPERIMENTS"
DEFAULT_EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments" / "default.yaml"
BACKENDS = ("openai", "batch-file", "transformers", "reference", "random")
# Agents that are not LLMs: the rule agents (`reference`) and the guardrail's control
# (`random`: seeded random proposals that the Strict guardrail filters like any agent's).
RULE_BACKENDS = ("reference", "random")
CONTROL_BACKEND = "random"
# What the agent sees of its own book (DESIGN §7): "aware" (the default) is shown its position
# after the previous session; "blind" is the ablation that sees only the market ("signal quality
# without state") and whose whole range is one batch.
VIEWS = ("aware", "blind")
BLIND = "blind"
_MODEL_FIELDS = {
    "backend",
    "model_id",
    "base_urls",
    "api_key_env",
    "sampling",
    "reasoning",
    "output_format",
    "concurrency",
    "timeout_s",
    "path",
    "modes",
}
_SAMPLING = {
    "temperature",
    "top_p",
    "top_k",
    "max_tokens",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "min_p",
}


SLUG_GRAMMAR = "<model>__<mode>[__<attitude>][__think|__nothink][__blind][__r<replicate>]"
# Reasoning on/off is part of an arm. The slug names it only for a model configured to run both
# ways (`reasoning: [true, false]`, a switch): a model run one way keeps the slug it always had,
# its setting recorded in the rows (is_reasoning) and in the configuration hash.
THINK, NO_THINK = "think", "nothink"
REASONING_PARTS = {THINK: True, NO_THINK: False}
# A model key is a real model id: `org/name`, dots, dashes, colons (`qwen3:8b`) and the like.
# It becomes one folder name through ingest.layout.arm_component, so the slash is safe there;
# refused are what reads as a path of its own (`..`, an empty or absolute segment, `\`),
# whitespace and control characters, and Dagster's partition-key separators (`|`, `,`, `...`).
_MODEL_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@+=/-]*")


class ExperimentError(ValueError):
    pass


@dataclass(frozen=True)
class ModelConfig:
    key: str  # the model part of arm slugs
    backend: str
    model_id: str
    base_urls: tuple[str, ...] = ()
    api_key_env: str | None = "OPENAI_API_KEY"
    sampling: tuple[tuple[str, Any], ...] = ()
    # The reasoning settings its arms run with: (False,), (True,), or both (a switch: each arm
    # runs once with reasoning on and once off, and the slug says which).
    reasoning: tuple[bool, ...] = (False,)
    output_format: str = "json_schema"
    concurrency: int = 16
    timeout_s: float = 120.0
    path: str | None = None  # transformers: a local model directory
    modes: tuple[str, ...] | None = None  # only these modes (None: the experiment's modes)

    @property
    def is_llm(self) -> bool:
        return self.backend not in RULE_BACKENDS

    @property
    def is_control(self) -> bool:
        """The guardrail's control: random proposals, not a strategy of its own."""
        return self.backend == CONTROL_BACKEND

    @property
    def reasoning_switch(self) -> bool:
        """The model's arms run with reasoning on and off: their slugs name which."""
        return len(self.reasoning) > 1


@dataclass(frozen=True)
class Arm:
    model: ModelConfig
    mode: str
    attitude: str | None = None
    replicate: int = 0
    view: str = "aware"
    reasoning: bool = False  # the arm asks for a reasoning trace (thinking on)

    @property
    def position_aware(self) -> bool:
        return self.view != BLIND

    @property
    def slug(self) -> str:
        parts = [self.model.key, self.mode]
        if self.attitude:
            parts.append(self.attitude)
        if self.model.reasoning_switch:
            parts.append(THINK if self.reasoning else NO_THINK)
        if self.view == BLIND:
            parts.append(BLIND)
        if self.replicate:
            parts.append(f"r{self.replicate}")
        return "__".join(parts)


@dataclass(frozen=True)
class Experiment:
    source: str
    models: dict[str, ModelConfig]
    modes: tuple[str, ...]
    attitudes: tuple[str | None, ...]
    replicates: int
    views: tuple[str, ...] = ("aware",)
    arms: tuple[Arm, ...] = field(init=False)

    def __post_init__(self) -> None:
        arms = tuple(
            Arm(model, mode, attitude, replicate, view, reasoning)
            for model in self.models.values()
            for mode in (model.modes or self.modes)
            for attitude in self.attitudes
            for reasoning in model.reasoning
            for view in self.views
            for replicate in range(self.replicates)
        )
        object.__setattr__(self, "arms", arms)

    def arm(self, slug: str, base_url: str | None = None) -> Arm:
        """The arm a slug names; an unconfigured model with --base-url is an openai model."""
        parts = slug.split("__")
        if len(parts) < 2:
            raise ExperimentError(f"arm {slug!r}: expected {SLUG_GRAMMAR}")
        model_key, mode, rest = parts[0], parts[1], parts[2:]
        check_model_key(model_key, f"arm {slug!r}")
        replicate = 0
        if rest and rest[-1].startswith("r") and rest[-1][1:].isdigit():
            replicate = int(rest.pop()[1:])
        view = "aware"
        if rest and rest[-1] == BLIND:
            view = rest.pop()
        reasoning: bool | None = None  # None: the slug names no reasoning setting
        if rest and rest[-1] in REASONING_PARTS:
            reasoning = REASONING_PARTS[rest.pop()]
        attitude = rest.pop(0) if rest else None
        if rest:
            raise ExperimentError(f"arm {slug!r}: unexpected part(s) {'__'.join(rest)}")
        _check_choice(f"arm {slug!r}: mode", mode, MODES)
        if attitude is not None:
            _check_choice(f"arm {slug!r}: attitude", attitude, tuple(ATTITUDES))
        model = self.models.get(model_key)
        if base_url:
            model = ModelConfig(
                key=model_key,
                backend="openai",
                model_id=model.model_id if model else model_key,
                base_urls=(base_url,),
                api_key_env=model.api_key_env if model else "OPENAI_API_KEY",
                sampling=model.sampling if model else (("temperature", 0.0),),
                # An unconfigured model runs as the slug says: a reasoning part is a switch.
                reasoning=model.reasoning
                if model
                else (True, False)
                if reasoning is not None
                else (False,),
                output_format=model.output_format if model else "json_schema",
                concurrency=model.concurrency if model else 16,
                modes=model.modes if model else None,
            )
        if model is None:
            raise ExperimentError(
                f"arm {slug!r}: model {model_key!r} is not in {self.source} (configured: "
                f"{', '.join(self.models)}); add it there or pass --base-url to use it as the "
                "model id of an OpenAI-compatible server"
            )
        if model.modes is not None and mode not in model.modes:
            raise ExperimentError(
                f"arm {slug!r}: model {model_key!r} runs in mode(s) {', '.join(model.modes)} "
                f"only ({self.source})"
            )
        if model.reasoning_switch and reasoning is None:
            raise ExperimentError(
                f"arm {slug!r}: model {model_key!r} runs with reasoning on and off; name which "
                f"with __{THINK} or __{NO_THINK} after the attitude ({SLUG_GRAMMAR})"
            )
        if not model.reasoning_switch and reasoning is not None:
            setting = "on" if model.reasoning[0] else "off"
            raise ExperimentError(
                f"arm {slug!r}: model {model_key!r} runs with reasoning {setting} only, so its "
                f"slugs name no reasoning part; drop the __{THINK}/__{NO_THINK} part or configure "
                "reasoning: [true, false]"
            )
        chosen = model.reasoning[0] if reasoning is None else reasoning
        return Arm(model, mode, attitude, replicate, view, chosen)


def check_model_key(key: str, where: str) -> None:
    """Refuse a model key that is not a plain model id (see _MODEL_KEY)."""
    segments = key.split("/")
    if (
        not _MODEL_KEY.fullmatch(key)
        or "..." in key
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        raise ExperimentError(
            f"{where}: model {key!r} is not a model id: use letters, digits and . _ - : @ + = "
            "and '/' between non-empty parts (org/name); no '..', spaces, '|' or ','"
        )


def _check_choice(what: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ExperimentError(f"{what} {value!r} is not one of {', '.join(map(str, choices))}")


def _model(source: str, key: str, raw: Any) -> ModelConfig:
    where = f"{source}: models.{key}"
    if "__" in key or not key:
        raise ExperimentError(f"{where}: a model key may not be empty or contain '__'")
    check_model_key(key, where)
    if not isinstance(raw, dict):
        raise ExperimentError(f"{where}: expected a mapping of settings")
    unknown = sorted(set(raw) - _MODEL_FIELDS)
    if unknown:
        raise ExperimentError(f"{where}: unknown setting(s) {', '.join(unknown)}")
    backend = raw.get("backend")
    _check_choice(f"{where}.backend", backend, BACKENDS)
    sampling = raw.get("sampling") or {}
    if not isinstance(sampling, dict) or set(sampling) - _SAMPLING:
        raise ExperimentError(
            f"{where}.sampling: expected a mapping of {', '.join(sorted(_SAMPLING))}"
        )
    base_urls = raw.get("base_urls") or []
    if isinstance(base_urls, str):
        base_urls = [base_urls]
    if backend == "openai" and not base_urls:
        raise ExperimentError(f"{where}: the openai backend needs base_urls")
    if backend == "transformers" and not raw.get("path"):
        raise ExperimentError(f"{where}: the transformers backend needs path (a model folder)")
    output_format = raw.get("output_format", "json_schema")
    _check_choice(f"{where}.output_format", output_format, ("json_schema", "prompt"))
    concurrency = raw.get("concurrency", 16)
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ExperimentError(f"{where}.concurrency: expected a positive integer")
    modes = raw.get("modes")
    if modes is not None:
        if not isinstance(modes, list) or not modes:
            raise ExperimentError(f"{where}.modes: expected a non-empty list of modes")
        for mode in modes:
            _check_choice(f"{where}.modes", mode, MODES)
    return ModelConfig(
        key=key,
        backend=backend,
        model_id=str(raw.get("model_id") or key),
        base_urls=tuple(str(url) for url in base_urls),
        api_key_env=raw.get("api_key_env", "OPENAI_API_KEY"),
        sampling=tuple(sorted(sampling.items())),
        reasoning=_reasoning(where, raw.get("reasoning", False)),
        output_format=output_format,
        concurrency=concurrency,
        timeout_s=float(raw.get("timeout_s", 120.0)),
        path=raw.get("path"),
        modes=tuple(modes) if modes is not None else None,
    )


def _reasoning(where: str, value: Any) -> tuple[bool, ...]:
    """`reasoning: false | true | [true, false]`: the settings the model's arms run with."""
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, bool) for v in values) or len(set(values)) < len(values):
        raise ExperimentError(
            f"{where}.reasoning: expected true, false or [true, false] (both: each arm runs "
            f"with reasoning on and off), got {value!r}"
        )
    return tuple(values)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """The parser's complaint on one line, with where it is (its own text spans lines)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def _yaml_word(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def load_experiment(path: str | Path | None = None) -> Experiment:
    chosen = Path(path or os.environ.get(EXPERIMENTS_ENV) or DEFAULT_EXPERIMENTS)
    source = str(chosen)
    if not chosen.is_file():
        raise ExperimentError(f"{source}: no such experiments file")
    try:
        raw = yaml.safe_load(chosen.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ExperimentError(f"{source}: not valid YAML: {_yaml_problem(error)}") from error
    if not isinstance(raw, dict):
        raise ExperimentError(
            f"{source}: expected a mapping with models, modes, attitudes, views, replicates"
        )
    unknown = sorted(set(raw) - {"models", "modes", "attitudes", "views", "replicates"})
    if unknown:
        raise ExperimentError(f"{source}: unknown section(s) {', '.join(unknown)}")
    models_raw = raw.get("models") or {}
    if not models_raw:
        raise ExperimentError(f"{source}: no models")
    if not isinstance(models_raw, dict):
        raise ExperimentError(f"{source}: models must be a mapping of model key to settings")
    for key in models_raw:
        if not isinstance(key, str):
            # YAML 1.1 reads off/on/yes/no as booleans and 1.5 as a number.
            raise ExperimentError(
                f"{source}: model key {key!r} is not text (YAML reads off, on, yes, no, true, "
                f"false and numbers as values); quote it, e.g. '{_yaml_word(key)}':"
            )
    modes = tuple(raw.get("modes") or MODES)
    for mode in modes:
        _check_choice(f"{source}: modes", mode, MODES)
    attitudes = tuple(raw.get("attitudes") or [None])
    for attitude in attitudes:
        if attitude is not None:
            _check_choice(f"{source}: attitudes", attitude, tuple(ATTITUDES))
    views = tuple(raw.get("views") or ("aware",))
    for view in views:
        _check_choice(f"{source}: views", view, VIEWS)
    replicates = raw.get("replicates", 1)
    if not isinstance(replicates, int) or replicates < 1:
        raise ExperimentError(f"{source}: replicates must be a positive integer")
    return Experiment(
        source=source,
        models={key: _model(source, str(key), value) for key, value in models_raw.items()},
        modes=modes,
        attitudes=attitudes,
        replicates=replicates,
        views=views,
    )
