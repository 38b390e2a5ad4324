"""What a Verba is: a described, schema-checked action Hydra may take.

A Verba is light, like a simonw/llm tool: a function with a typed signature (the arguments
schema is derived from it) or a handler with a hand-written JSON schema, plus a human name, a
description and a hint on when to use it.  Handlers receive the validated arguments and, when
they declare a ``ctx`` parameter, a :class:`VerbaContext` carrying the trusted origin of the
request and the Verba's own settings.  The origin never comes from model output.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

# Argument names that would look like trusted context.  A Verba may not declare them, and
# Hydra strips them from model output before validating a call.
RESERVED_ARGS = frozenset({"origin", "user", "user_id", "session", "session_id", "api_key",
                           "api_key_id", "platform", "ctx"})

_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class Origin:
    """Who asked: built by the server from the request, never from model output."""

    session_id: str
    user: str | None = None
    api_key_id: str | None = None
    platform: str = "openai_api"


@dataclass
class VerbaResult:
    """What a Verba did: ``ok`` + a short ``summary`` for the user + ``data``, or an error."""

    ok: bool
    summary: str
    data: Any = None
    error: str | None = None

    @classmethod
    def success(cls, summary: str, data: Any = None) -> VerbaResult:
        return cls(True, summary, data)

    @classmethod
    def failure(cls, reason: str, data: Any = None) -> VerbaResult:
        return cls(False, reason, data, error=reason)


class VerbaError(Exception):
    """Raise from a handler to fail with a reason fit for the user."""


@dataclass(frozen=True)
class SettingField:
    """One user-settable option of a Verba.  Secret ones live in the keyring."""

    name: str
    label: str
    description: str = ""
    secret: bool = False
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class VerbaContext:
    """Trusted context handed to a handler next to (never inside) its arguments."""

    origin: Origin
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str | None] = field(default_factory=dict)
    timeout: float = 20.0

    def setting(self, name: str, default: Any = None) -> Any:
        """A non-secret setting value (the field default when unset)."""
        value = self.settings.get(name)
        return default if value is None else value

    def secret(self, name: str) -> str | None:
        """A secret setting value from the keyring, or None."""
        return self.secrets.get(name)


Handler = Callable[..., Any] | Callable[..., Awaitable[Any]]


@dataclass
class Verba:
    """A tool Hydra can use.  Build with :func:`verba` or directly with a JSON schema."""

    id: str
    name: str
    description: str
    handler: Handler
    parameters: dict[str, Any]
    when_to_use: str = ""
    settings: tuple[SettingField, ...] = ()
    default_enabled: bool = False
    acts_on_world: bool = False
    source: str = "builtin"
    args_model: type[BaseModel] | None = None
    wants_ctx: bool = False

    def __post_init__(self) -> None:
        if not _ID_RE.match(self.id):
            raise ValueError(f"Verba id {self.id!r} must be lower-case letters, digits and _")
        if self.parameters.get("type") != "object":
            raise ValueError(f"Verba {self.id}: the arguments schema must be an object schema")
        jsonschema.Draft202012Validator.check_schema(self.parameters)
        clash = RESERVED_ARGS & set(self.parameters.get("properties", {}))
        if clash:
            raise ValueError(f"Verba {self.id}: argument names {sorted(clash)} are reserved "
                             "for the trusted origin")
        if not self.wants_ctx:
            self.wants_ctx = _declares_ctx(self.handler)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    def setting_field(self, name: str) -> SettingField | None:
        return next((f for f in self.settings if f.name == name), None)

    def contract(self) -> str:
        """The text a model sees about this Verba."""
        text = f"{self.id}: {self.name}. {self.description}"
        if self.when_to_use:
            text += f" Use it when: {self.when_to_use}"
        return text

    def tool_spec(self) -> dict[str, Any]:
        """OpenAI ``tools`` entry for native tool calling."""
        return {"type": "function", "function": {
            "name": self.id, "description": self.contract(), "parameters": self.parameters}}

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Checked (and for typed handlers, converted) arguments.  Raises ArgumentsInvalid."""
        validator = jsonschema.Draft202012Validator(self.parameters)
        errors = sorted(validator.iter_errors(dict(args)), key=lambda e: list(e.path))
        if errors:
            raise ArgumentsInvalid("; ".join(_describe(e) for e in errors[:5]))
        if self.args_model is None:
            return dict(args)
        try:
            model = self.args_model.model_validate(dict(args))
        except ValidationError as exc:
            raise ArgumentsInvalid("; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'arguments'}: {e['msg']}" for e in exc.errors()
            )) from exc
        return {name: getattr(model, name) for name in type(model).model_fields}


class ArgumentsInvalid(ValueError):
    """The arguments do not match the Verba's schema (message says how)."""


def _describe(err: jsonschema.ValidationError) -> str:
    where = ".".join(str(p) for p in err.absolute_path)
    return f"{where}: {err.message}" if where else err.message


def _declares_ctx(fn: Callable[..., Any]) -> bool:
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def schema_from_signature(fn: Callable[..., Any], model_name: str) -> tuple[dict[str, Any],
                                                                            type[BaseModel]]:
    """JSON schema + pydantic model for ``fn``'s parameters (``ctx`` excluded)."""
    fields: dict[str, Any] = {}
    hints = _type_hints(fn)
    for name, param in inspect.signature(fn).parameters.items():
        if name == "ctx":
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise ValueError(f"{fn.__name__}: *args/**kwargs cannot be described as a schema")
        annotation = hints.get(name, param.annotation)
        if annotation is inspect.Parameter.empty:
            annotation = str
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (annotation, default)
    model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    _strip_titles(schema)
    schema.pop("description", None)
    schema.setdefault("properties", {})
    return schema, model


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn, include_extras=True)
    except Exception:  # unresolvable forward refs: fall back to raw annotations
        return {}


def _strip_titles(node: Any) -> None:
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):
            node.pop("title")
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop in value.values():
                    _strip_titles(prop)
            else:
                _strip_titles(value)
    elif isinstance(node, list):
        for item in node:
            _strip_titles(item)


def verba(*, id: str, name: str, description: str, when_to_use: str = "",
          parameters: dict[str, Any] | None = None, settings: tuple[SettingField, ...] = (),
          default_enabled: bool = False, acts_on_world: bool = False
          ) -> Callable[[Handler], Verba]:
    """Decorator: make a Verba from a function; its typed signature gives the schema."""

    def wrap(fn: Handler) -> Verba:
        model: type[BaseModel] | None = None
        schema = parameters
        if schema is None:
            schema, model = schema_from_signature(fn, f"{id}_arguments")
        return Verba(id=id, name=name, description=description, handler=fn,
                     parameters=schema, when_to_use=when_to_use, settings=tuple(settings),
                     default_enabled=default_enabled, acts_on_world=acts_on_world,
                     args_model=model)

    return wrap


def coerce_result(value: Any) -> VerbaResult:
    """Accept a VerbaResult, a str (summary) or anything JSON-ish (data) from a handler."""
    if isinstance(value, VerbaResult):
        return value
    if isinstance(value, str):
        return VerbaResult.success(value)
    if value is None:
        return VerbaResult.success("done")
    return VerbaResult.success(_short(repr(value)), value)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
