"""Custom field definitions and categories: ``s.fields`` and ``s.categories``."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import attrs

from pycrm.domain import RECORD_BY_RESOURCE
from pycrm.domain.classification import Category
from pycrm.domain.custom_fields import (
    CUSTOMIZABLE,
    FieldDefinition,
    FieldType,
    check_value,
    typed_value,
)
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_choice,
    check_key,
    check_one_of,
    check_tags,
    check_text,
)
from pycrm.domain.query import Eq, In, IsNull, Not, OrderBy, all_of
from pycrm.domain.records import Record
from pycrm.errors import FieldError, NotFound, ValidationError
from pycrm.services.records import RecordService, write

__all__ = ["CategoryService", "FieldService"]

_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
_EDITABLE = (
    "label", "required", "default", "minimum", "maximum", "pattern", "choices", "group",
    "readable_by", "writable_by", "searchable", "retired", "personal",
)  # fmt: skip


def _decimal(field: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool | float) or not isinstance(value, int | str | Decimal):
        raise ValidationError(field, value, "must be an int, Decimal or numeric text")
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        raise ValidationError(field, value, "is not a number") from None
    if not number.is_finite():
        raise ValidationError(field, value, "must be a finite number")
    return number


class FieldService(RecordService[FieldDefinition]):
    """Custom fields: define, change, retire (admins, or by a policy grant); read their values."""

    record_type = FieldDefinition

    def _options(self, entity: str, kind: FieldType, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with Checks() as checks:
            if "label" in values:
                out["label"] = checks(check_text, "label", values["label"], required=True)
            for name in ("required", "searchable", "retired", "personal"):
                if name in values:
                    out[name] = checks(check_bool, name, values[name])
            for name in ("minimum", "maximum"):
                if name in values:
                    out[name] = checks(_decimal, name, values[name])
            if "pattern" in values and values["pattern"] is not None:
                pattern = check_key("pattern", values["pattern"], what="text", limit=500)
                try:
                    re.compile(pattern)
                    out["pattern"] = pattern
                except (re.error, TypeError):
                    checks.errors.append(
                        FieldError("pattern", values["pattern"], "is not a regular expression")
                    )
            elif "pattern" in values:
                out["pattern"] = None
            if "choices" in values:
                out["choices"] = checks(check_tags, "choices", values["choices"])
            if "group" in values:
                out["group"] = checks(check_text, "group", values["group"], limit=80)
            for name in ("readable_by", "writable_by"):
                if name in values:
                    out[name] = checks(check_tags, name, values[name])
        if kind in (FieldType.CHOICE, FieldType.MULTI_CHOICE) and not out.get(
            "choices", values.get("choices")
        ):
            raise ValidationError("choices", None, f"a {kind.value} field needs choices")
        return out

    @write
    def define(
        self,
        entity: str,
        key: str,
        type: FieldType | str,
        *,
        label: str | None = None,
        **options: Any,
    ) -> FieldDefinition:
        """Define a custom field of ``entity`` (customer, contact, lead, deal, ticket, contract).

        ``options``: ``required``, ``default``, ``minimum``, ``maximum``, ``pattern``,
        ``choices``, ``reference`` (a record kind), ``group``, ``readable_by``,
        ``writable_by`` (departments or roles), ``searchable`` (indexed),
        ``personal`` (a value about a person, which an erasure removes).
        """
        self._require_org("create", "field_definition")
        if entity not in CUSTOMIZABLE:
            raise ValidationError("entity", entity, f"must be one of {', '.join(CUSTOMIZABLE)}")
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValidationError(
                "key", key, "must be lower-case letters, digits and _ (starting with a letter)"
            )
        kind = check_choice("type", type, FieldType)
        unknown = sorted(set(options) - {*_EDITABLE, "reference"} - {"label"})
        if unknown:
            raise ValidationError(
                unknown[0], options[unknown[0]], "is not a field definition option"
            )
        reference = options.pop("reference", None)
        if (kind is FieldType.REFERENCE or reference is not None) and (
            not isinstance(reference, str) or reference not in RECORD_BY_RESOURCE
        ):
            raise ValidationError("reference", reference, "must name a record kind, e.g. customer")
        default = options.pop("default", None)
        values = self._options(
            entity, kind, {"label": label or key.replace("_", " ").capitalize(), **options}
        )
        draft = FieldDefinition(
            **self._s._stamp(entity=entity, key=key, type=kind, reference=reference, **values)
        )
        if default is not None:
            draft = attrs.evolve(draft, default=_default(draft, default))
        if self._repo.find(all_of([Eq("entity", entity), Eq("key", key)]), limit=1):
            raise ValidationError("key", key, f"{entity} already has a custom field {key!r}")
        if not self._is_admin():
            self._s._guard.require(draft, "create")
        self._repo.add(draft)
        self._s._record("define", None, draft)
        if draft.searchable:
            self._s._uow_index(entity, key)
        self._s.__dict__.pop("_field_definitions", None)
        return draft

    def get_definition(self, entity: str, key: str) -> FieldDefinition:
        """The definition of ``entity``'s field ``key``."""
        where = all_of([Eq("entity", entity), Eq("key", key)])
        found = self._s.read(FieldDefinition).find(where, limit=1)
        if not found:
            raise NotFound("field_definition", f"{entity}.{key}")
        return found[0]

    def definitions(self, entity: str, *, include_retired: bool = False) -> list[FieldDefinition]:
        """The custom fields of ``entity``, by group and key.

        Returns all of them: this list has no pages.
        """
        where = Eq("entity", check_one_of("entity", entity, CUSTOMIZABLE))
        return sorted(
            (
                d
                for d in self._s.read(FieldDefinition).find(where)
                if include_retired or not d.retired
            ),
            key=lambda d: (d.group or "", d.key),
        )

    @write
    def redefine(
        self,
        entity: str,
        key: str,
        *,
        migrate: Callable[[Any], Any] | None = None,
        **changes: Any,
    ) -> FieldDefinition:
        """Change a definition (its version goes up).

        Every stored value is checked against the new definition; if any would
        be invalid the change is refused with a ValidationError naming the
        first such record, unless ``migrate`` is given: it receives each stored
        value (JSON form) and returns the new one, which is checked and written.
        """
        self._require_org("update", "field_definition")
        current = self.get_definition(entity, key)
        unknown = sorted(set(changes) - set(_EDITABLE) - {"type"})
        if unknown:
            raise ValidationError(unknown[0], changes[unknown[0]], "cannot be changed")
        kind = check_choice("type", changes.pop("type", current.type), FieldType)
        default = changes.pop("default", current.default)
        values = self._options(entity, kind, {**{"choices": current.choices}, **changes})
        new = attrs.evolve(current, type=kind, **values)
        if default is not None:
            default = _default(new, default)
        new = attrs.evolve(new, default=default)
        cls = RECORD_BY_RESOURCE[entity]
        service = getattr(self._s, entity + "s")
        repo = self._s._uow.repo(cls)
        path = f"custom.{key}"
        with self._s._guard.bypass():
            for record in repo.find(Not(IsNull(path)) if not new.required else None):
                stored = record.custom.get(key)  # type: ignore[attr-defined]
                value = migrate(stored) if migrate is not None else stored
                try:
                    checked = check_value(new, value)
                except ValidationError as exc:
                    hint = "" if migrate else "; pass migrate= to convert stored values"
                    raise ValidationError(
                        path, stored, f"{entity} {record.id} would be invalid: {exc.reason}{hint}"
                    ) from None
                if checked != stored:
                    custom = {k: v for k, v in record.custom.items() if k != key}  # type: ignore[attr-defined]
                    if checked is not None:
                        custom[key] = checked
                    service._change(record, None, "migrate", custom=custom)
        updated = self._change(
            current, None, "redefine", **{f: getattr(new, f) for f in ("type", "default", *values)}
        )
        if updated.searchable and not current.searchable:
            self._s._uow_index(entity, key)
        self._s.__dict__.pop("_field_definitions", None)
        return updated

    @write
    def retire(self, entity: str, key: str) -> FieldDefinition:
        """Stop offering a field; stored values stay (and can be read back)."""
        self._require_org("update", "field_definition")
        updated = self._change(self.get_definition(entity, key), None, "retire", retired=True)
        self._s.__dict__.pop("_field_definitions", None)
        return updated

    def typed(self, record: Record) -> dict[str, Any]:
        """A record's custom values as Python values (Decimal, date, Money …)."""
        if not isinstance(record, Record):
            raise ValidationError("record", record, "must be a record (a customer, a deal …)")
        defs = self._s._field_definitions(record.resource)
        custom: Mapping[str, Any] = getattr(record, "custom", {})
        return {k: typed_value(defs[k], v) if k in defs else v for k, v in custom.items()}


class CategoryService(RecordService[Category]):
    """Controlled, hierarchical categories (``s.categories``)."""

    record_type = Category

    @write
    def create(
        self, key: str, name: str, *, parent: str | None = None, taxonomy: str | None = None
    ) -> Category:
        """Add a category under ``parent`` (a path), or a new root (its key is the taxonomy)."""
        self._s._guard.require_any("category", "create") if not self._s.actor.is_system else None
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValidationError("key", key, "must be lower-case letters, digits and _")
        label = check_text("name", name, required=True)
        if parent is None:
            root = taxonomy or key
            record = Category(**self._s._stamp(taxonomy=root, key=key, name=label, path=key))
        else:
            up = self.by_path(check_key("parent", parent, what="a category path"))
            record = Category(
                **self._s._stamp(
                    taxonomy=up.taxonomy,
                    key=key,
                    name=label,
                    parent_id=up.id,
                    path=f"{up.path}/{key}",
                )
            )
        if self._repo.find(Eq("path", record.path), limit=1):
            raise ValidationError("key", key, f"category {record.path!r} exists")
        self._repo.add(record)
        self._s._record("create", None, record)
        return record

    def by_path(self, path: str) -> Category:
        """The category at ``path``."""
        found = (
            self._s.read(Category).find(Eq("path", path), limit=1) if isinstance(path, str) else []
        )
        if not found:
            raise NotFound("category", str(path))
        return found[0]

    def tree(self, taxonomy: str) -> list[Category]:
        """Every category of a taxonomy, parents before children."""
        return self._s.read(Category).find(Eq("taxonomy", taxonomy), order_by=[OrderBy("path")])

    def check_paths(self, field: str, value: Any) -> tuple[str, ...]:
        """Category paths that exist (raises ValidationError naming the first unknown one)."""
        if value is None:
            return ()
        if isinstance(value, str | bytes) or not isinstance(value, Sequence):
            raise ValidationError(field, value, "must be a list of category paths")
        paths = tuple(
            dict.fromkeys(
                check_key(f"{field}[{i}]", path, what="a category path")
                for i, path in enumerate(value)
            )
        )
        known = {c.path for c in self._repo.find(In("path", paths))} if paths else set()
        for i, path in enumerate(paths):
            if path not in known:
                raise ValidationError(f"{field}[{i}]", path, "is not a category")
        return paths


def _default(definition: FieldDefinition, value: Any) -> Any:
    """``value`` checked as the default of ``definition`` (a refusal names ``default``)."""
    try:
        return check_value(attrs.evolve(definition, required=False), value)
    except ValidationError as exc:
        raise ValidationError("default", value, exc.reason) from None


def check_custom_writes(session: Any, entity: str, keys: Sequence[str]) -> None:
    """Raise PermissionDenied if the actor may not write one of these custom fields."""
    defs = session._field_definitions(entity)
    for key in keys:
        if key in defs:
            _permission(session, defs[key], "write")


def check_custom_read(session: Any, defn: FieldDefinition) -> None:
    """Raise PermissionDenied if the actor may not read (so not search on) this field."""
    _permission(session, defn, "read")


def check_references(
    session: Any, definitions: Mapping[str, FieldDefinition], values: Mapping[str, Any]
) -> None:
    """Raise ValidationError naming ``custom.<key>`` for a reference to no stored record.

    One lookup per kind referenced, whatever the number of fields.
    """
    wanted: dict[str, dict[str, str]] = {}
    for key, value in values.items():
        defn = definitions.get(key)
        if value is not None and defn is not None and defn.type is FieldType.REFERENCE:
            wanted.setdefault(str(defn.reference), {})[key] = value
    for resource, refs in wanted.items():
        found = session._uow.repo(RECORD_BY_RESOURCE[resource]).get_many(sorted(set(refs.values())))
        for key, value in refs.items():
            if value not in found:
                raise ValidationError(
                    f"custom.{key}", value, f"is not the id of a stored {resource}"
                )


def _permission(session: Any, defn: FieldDefinition, action: str) -> None:
    # Writing a field requires reading it too: no blind overwrite of what one cannot see.
    lists = (defn.readable_by, defn.writable_by) if action == "write" else (defn.readable_by,)
    guard = session._guard
    for allowed in lists:
        if allowed and not guard.unrestricted and guard.roles.isdisjoint(allowed):
            guard.deny(action, defn.entity, None, f"custom field {defn.key!r} is not for this role")
