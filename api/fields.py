"""DHIS2 ``fields`` filtering: parse the selection syntax and apply it to plain objects.

Syntax (DHIS2 field filter): ``id,displayName,messages[*,sender[id,displayName]]``.

- Names are separated by commas; whitespace around names, commas and brackets is ignored.
- ``[...]`` or ``(...)`` select sub-fields, to any depth.
- ``*``, ``:all`` and ``:owner`` select every key; ``:identifiable`` and ``:nameable`` select the
  DHIS2 identifiable / nameable properties that the object has.
- ``!name`` removes a key, whatever else selected it (exclusion always wins).
- Transformers follow a name with ``~`` or ``::`` and may be chained: ``rename(new)``, ``size``,
  ``isEmpty``, ``isNotEmpty``, ``pluck`` / ``pluck(field)``.  They may stand before or after the
  sub-field brackets (``a~rename(b)[id]`` or ``a[id]~rename(b)``).
- An explicitly listed name overrides what ``*`` or a preset would give for that key.
- Listing the same output key twice merges the sub-fields (``a[id],a[name]`` = ``a[id,name]``).
- Empty items between top-level commas are ignored; inside brackets they are an error.

Rendering (see ``render``): absent keys are skipped and ``None`` values are omitted at every level
(``None`` elements inside lists are kept). A nested mapping with an ``"id"`` key is a reference and
collapses to ``{"id": ...}`` unless sub-fields are given; one without ``"id"`` is embedded and
rendered with ``*``.  Zero-argument callables are lazy values, called only when selected.

Output order: keys always follow the object's own key order, whether selected by ``*``, a preset or
by name (``fields=subject,id`` gives ``id`` then ``subject`` if the object lists ``id`` first).  A
renamed or transformed field sits at its source key's position.  This is DHIS2's behaviour too,
since it filters a tree serialised in property order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NoReturn

__all__ = ["FieldSpec", "FieldsError", "parse_fields", "render", "render_many", "requested_top_level"]


class FieldsError(ValueError):
    """The fields parameter cannot be parsed (message is user-facing)."""


_IDENTIFIABLE = ("id", "code", "name", "displayName", "created", "lastUpdated", "href")
_NAMEABLE = (*_IDENTIFIABLE, "shortName", "description", "displayShortName", "displayDescription")
# None means "every key" (same as *).
_PRESETS: dict[str, frozenset[str] | None] = {
    "all": None,
    "owner": None,
    "identifiable": frozenset(_IDENTIFIABLE),
    "nameable": frozenset(_NAMEABLE),
}
# Transformer name -> whether its argument is "required", "optional" or "none".
_ARITY = {"rename": "required", "size": "none", "isEmpty": "none", "isNotEmpty": "none", "pluck": "optional"}
_MAX_DEPTH = 32
_SPACE_RE = re.compile(r"\s*([\[\](),!~:*])\s*")
_NAME_RE = re.compile(r"[A-Za-z0-9_]+")

Transform = tuple[str, str | None]


@dataclass(frozen=True)
class _Field:
    name: str  # key read from the object
    key: str  # key written to the output (differs after rename)
    spec: FieldSpec | None  # sub-fields, None when none were given
    transforms: tuple[Transform, ...]


@dataclass(frozen=True)
class FieldSpec:
    """A parsed ``fields`` selection; build it with ``parse_fields`` and use it with ``render``."""

    star: bool = False
    preset: frozenset[str] = frozenset()
    fields: tuple[_Field, ...] = ()
    excluded: frozenset[str] = frozenset()
    _by_name: dict[str, tuple[_Field, ...]] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        by_name: dict[str, tuple[_Field, ...]] = {}
        for f in self.fields:
            by_name[f.name] = (*by_name.get(f.name, ()), f)
        object.__setattr__(self, "_by_name", by_name)


_STAR = FieldSpec(star=True)


# ---------------------------------------------------------------- parsing


def _add_field(fields: dict[str, _Field], new: _Field) -> None:
    old = fields.get(new.key)
    if old is None or old.name != new.name:
        fields[new.key] = new
        return
    fields[new.key] = _Field(new.name, new.key, _merge(old.spec, new.spec), new.transforms or old.transforms)


def _merge(a: FieldSpec | None, b: FieldSpec | None) -> FieldSpec | None:
    if a is None or b is None:
        return a if b is None else b
    fields = {f.key: f for f in a.fields}
    for f in b.fields:
        _add_field(fields, f)
    return FieldSpec(a.star or b.star, a.preset | b.preset, tuple(fields.values()), a.excluded | b.excluded)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, why: str) -> NoReturn:
        raise FieldsError(f"Invalid fields parameter: {why} in '{self.text}'")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> FieldSpec:
        stack: list[str] = []
        for c in self.text:
            if c in "[(":
                stack.append("]" if c == "[" else ")")
            elif c in "])" and (not stack or stack.pop() != c):
                self.fail("unbalanced brackets")
        if stack:
            self.fail("unbalanced brackets")
        return self.group(depth=0, close="")

    def group(self, depth: int, close: str) -> FieldSpec:
        if depth > _MAX_DEPTH:
            self.fail(f"fields nested deeper than {_MAX_DEPTH} levels")
        star, preset, excluded = False, set[str](), set[str]()
        fields: dict[str, _Field] = {}
        while True:
            c = self.peek()
            if c in ("", ",", close):
                if close:
                    self.fail(f"empty field name at position {self.pos}")
            elif c == "!":
                self.pos += 1
                excluded.add(self.name())
                self.end_of_item(close, "an excluded field takes no sub-fields or transformers")
            elif c == "*":
                self.pos += 1
                star = True
                self.end_of_item(close, "'*' takes no sub-fields or transformers")
            elif c == ":" and not self.text.startswith("::", self.pos):
                self.pos += 1
                name = self.name()
                if name not in _PRESETS:
                    self.fail(f"unknown preset ':{name}' (use one of :{', :'.join(_PRESETS)})")
                keys = _PRESETS[name]
                star = star or keys is None
                preset |= keys or set()
                self.end_of_item(close, "a preset takes no sub-fields or transformers")
            else:
                _add_field(fields, self.field(depth))
            c = self.peek()
            self.pos += 1
            if c == ",":
                continue
            if c == close:  # "" at the top level
                return FieldSpec(star, frozenset(preset), tuple(fields.values()), frozenset(excluded))
            self.pos -= 1
            self.fail(f"unexpected {c!r} at position {self.pos}")

    def end_of_item(self, close: str, why: str) -> None:
        if self.peek() not in ("", ",", close):
            self.fail(why)

    def name(self) -> str:
        m = _NAME_RE.match(self.text, self.pos)
        if m is None:
            what = repr(self.peek()) if self.peek() else "end of text"
            self.fail(f"expected a field name at position {self.pos}, found {what}")
        self.pos = m.end()
        return m.group()

    def field(self, depth: int) -> _Field:
        name = self.name()
        transforms = self.transforms()
        spec = None
        if self.peek() in ("[", "("):
            close = "]" if self.peek() == "[" else ")"
            self.pos += 1
            spec = self.group(depth + 1, close)
            transforms += self.transforms()
        key = name
        for t, arg in transforms:
            if t == "rename" and arg:
                key = arg
        return _Field(name, key, spec, transforms)

    def transforms(self) -> tuple[Transform, ...]:
        out: list[Transform] = []
        while True:
            if self.peek() == "~":
                self.pos += 1
            elif self.text.startswith("::", self.pos):
                self.pos += 2
            else:
                return tuple(out)
            name = self.name()
            if name not in _ARITY:
                self.fail(f"unknown transformer '{name}' (use one of {', '.join(_ARITY)})")
            arg = None
            if self.peek() == "(":
                self.pos += 1
                arg = self.name() if self.peek() != ")" else None
                if self.peek() != ")":
                    self.fail(f"transformer '{name}' takes a single name as argument")
                self.pos += 1
            if arg is None and _ARITY[name] == "required":
                self.fail(f"transformer '{name}' needs an argument, e.g. {name}(newName)")
            if arg is not None and _ARITY[name] == "none":
                self.fail(f"transformer '{name}' takes no argument")
            out.append((name, arg))


@lru_cache(maxsize=512)
def _parse(text: str) -> FieldSpec:
    return _Parser(text).parse()


def _normalise(values: str | Sequence[str] | None) -> str:
    parts = [values] if isinstance(values, str) else list(values or ())
    text = ",".join(p.strip() for p in parts if p and p.strip())
    return _SPACE_RE.sub(r"\1", text).strip()


def parse_fields(values: str | Sequence[str] | None, default: str) -> FieldSpec:
    """Parse one or more `fields` query values (joined with commas); use `default` when empty/None."""
    text = _normalise(values)
    if not text.strip(","):
        text = _normalise(default)
    return _parse(text)


def requested_top_level(spec: FieldSpec) -> set[str] | None:
    """Top-level keys the spec could include; None means 'all' (a * or preset is present)."""
    if spec.star or spec.preset:
        return None
    return {f.name for f in spec.fields} - spec.excluded


# ---------------------------------------------------------------- rendering


def _resolve(value: Any) -> Any:
    return value() if callable(value) else value


def _pluck(value: Any, arg: str | None) -> Any:
    key = arg or "id"
    if isinstance(value, Mapping):
        return _resolve(value.get(key))
    if isinstance(value, list | tuple):
        plucked = (_resolve(v.get(key)) if isinstance(v, Mapping) else v for v in value)
        return [v for v in plucked if v is not None]
    return value


def _is_empty(value: Any) -> bool:
    return isinstance(value, Sized) and len(value) == 0


_TRANSFORMS: dict[str, Callable[[Any, str | None], Any]] = {
    "rename": lambda v, _: v,
    "size": lambda v, _: len(v) if isinstance(v, Sized) else v,
    "isEmpty": lambda v, _: _is_empty(v),
    "isNotEmpty": lambda v, _: not _is_empty(v),
    "pluck": _pluck,
}


def _value(value: Any, spec: FieldSpec | None) -> Any:
    if callable(value):
        value = value()
    if isinstance(value, Mapping):
        if spec is not None:
            return render(value, spec)
        if "id" in value:
            ident = _resolve(value["id"])
            return {} if ident is None else {"id": ident}
        return render(value, _STAR)
    if isinstance(value, list | tuple):
        return [_value(v, spec) for v in value]
    return value


def _emit(value: Any, f: _Field) -> Any:
    value = _resolve(value)
    if value is None:
        return None
    for name, arg in f.transforms:
        value = _TRANSFORMS[name](value, arg)
    return _value(value, f.spec)


def render(obj: Mapping[str, Any], spec: FieldSpec) -> dict[str, Any]:
    """Select from one object what `spec` asks for."""
    out: dict[str, Any] = {}
    by_name, excluded, star, preset = spec._by_name, spec.excluded, spec.star, spec.preset
    for key, value in obj.items():
        if key in excluded:
            continue
        chosen = by_name.get(key)
        if chosen is not None:
            for f in chosen:
                rendered = _emit(value, f)
                if rendered is not None:
                    out[f.key] = rendered
        elif star or key in preset:
            rendered = _value(value, None)
            if rendered is not None:
                out[key] = rendered
    return out


def render_many(objs: Iterable[Mapping[str, Any]], spec: FieldSpec) -> list[dict[str, Any]]:
    """Render every object with the same spec."""
    return [render(obj, spec) for obj in objs]
