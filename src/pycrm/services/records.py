"""What every service over a versioned, audited record type shares."""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, ParamSpec, TypeVar

import attrs

from pycrm.domain.audit import CHECKPOINT, AuditEntry, FieldChange, replay
from pycrm.domain.contact_points import Address, ContactPoint, PointKind
from pycrm.domain.fields import (
    Checks,
    check_bool,
    check_id,
    check_int,
    check_points,
    check_text,
    fold_points,
)
from pycrm.domain.names import display_name
from pycrm.domain.org import User
from pycrm.domain.query import And, Eq, Filter, Not, OrderBy, Range, all_of
from pycrm.domain.records import Record
from pycrm.errors import ConcurrencyError, NotFound, ValidationError
from pycrm.matching.countries import country_code, phone_region
from pycrm.ports import Repository
from pycrm.regions import region_code
from pycrm.serialization import from_dict
from pycrm.services.search import MAX_PAGE
from pycrm.session import Session

__all__ = ["RecordService", "Service", "check_address", "check_when", "write"]

R = TypeVar("R", bound=Record)

#: The policy action a write needs, by the write's audit action (default ``update``).
PERMISSION_FOR = {
    "archive": "delete",
    "restore": "delete",
    "assign": "assign",
    "approve": "approve",
    "approve_step": "approve",
    "reject": "approve",
    "delegate": "approve",
}
P = ParamSpec("P")
T = TypeVar("T")


def write(method: Callable[P, T]) -> Callable[P, T]:
    """Make a service method all-or-nothing: if it raises, none of its writes remain."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        service = args[0]
        assert isinstance(service, Service)
        with service._s._atomic():
            result = method(*args, **kwargs)
        # What a write returns is read by the actor: hidden fields stay hidden.
        return service._s._guard.redact_all(result)

    return wrapper


#: Keywords people write for the ones pycrm takes (``mail=`` for ``emails=``).
_SYNONYMS = {
    "mail": "emails",
    "mails": "emails",
    "e_mail": "emails",
    "email_address": "email",
    "email_addresses": "emails",
    "telephone": "phones",
    "tel": "phones",
    "mobile": "phones",
    "phone_number": "phone",
    "phone_numbers": "phones",
    "region_code": "phone_region",
    "country": "address",
}


def keyword_hint(name: str, allowed: set[str]) -> str:
    """``: did you mean `emails=`?`` for the known keyword closest to ``name`` (or nothing)."""
    key = name.lower() if isinstance(name, str) else ""
    meant = _SYNONYMS.get(key)
    if meant not in allowed:
        close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.6)
        meant = close[0] if close else None
    return f": did you mean `{meant}=`?" if meant else ""


def checked_changes(
    fields: Mapping[str, Any], checkers: Mapping[str, Callable[[str, Any], Any]], kind: str
) -> dict[str, Any]:
    """``fields`` each checked by its checker; every bad one reported at once.

    :raises ValidationError: naming an unknown field (with the one probably
        meant) or the bad ones.
    """
    unknown = sorted(set(fields) - set(checkers))
    if unknown:
        raise ValidationError(
            unknown[0],
            fields[unknown[0]],
            f"is not a {kind} field that can be changed{keyword_hint(unknown[0], set(checkers))}",
        )
    with Checks() as checks:
        return {k: checks(checkers[k], k, v) for k, v in fields.items()}


#: Marks a service that is not inside :meth:`RecordService._pages`.
_LISTING: Any = object()


def check_when(field: str, value: Any) -> datetime:
    """A timezone-aware datetime (naive ones are ambiguous and refused)."""
    if not isinstance(value, datetime):
        raise ValidationError(field, value, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError(field, value, "must be timezone-aware (e.g. datetime.now(UTC))")
    return value


def check_address(field: str, value: Any) -> Address | None:
    """An :class:`Address` from a mapping of its parts.

    The country may be written as an ISO 3166 alpha-2 or alpha-3 code, a
    numeric code, or a name in one of the common languages ("Germany", "DEU",
    "Deutschland"); it is stored as the alpha-2 code.
    """
    if isinstance(value, Mapping) and isinstance(value.get("country"), str):
        given = value["country"]
        code = country_code(given)
        if code is not None:
            value = {**value, "country": code}
        elif given.strip():
            raise ValidationError(
                f"{field}.country", given, "names no country: give its ISO 3166 code or its name"
            )
    return Address.parse(value, field)


class Service:
    """A service bound to one session."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def _check_user(self, field: str, value: Any) -> str | None:
        """``value`` is None or the id of a user in this tenant."""
        if value is None:
            return None
        user_id = check_id(field, value)
        if self._s._uow.repo(User).get(user_id) is None:
            raise ValidationError(field, value, "is not the id of a user")
        return user_id

    _after: str | None
    """Set only while :meth:`_pages` reads a page: the id the page starts after."""

    def _paged(
        self, where: Filter | None, order_by: Sequence[OrderBy], offset: int
    ) -> tuple[Filter | None, Sequence[OrderBy], int]:
        """A list's query as :meth:`_pages` reads it: by id, after the last one seen."""
        after = getattr(self, "_after", _LISTING)
        if after is _LISTING:
            return where, order_by, offset
        if after is not None:  # ids grow with time: the records made after it
            where = all_of([where, Range("id", after, None), Not(Eq("id", after))])
        return where, [OrderBy("id")], 0

    def _pages(
        self, method: Callable[..., list[T]], filters: Mapping[str, Any], page_size: Any
    ) -> Iterator[T]:
        """Every record ``method`` (this service's list or search) finds with ``filters``.

        Read page by page in creation order, each page starting after the last
        record of the one before (not at an offset), so records created or
        archived meanwhile never make the iterator skip or repeat one. The
        first page is read at once, so bad filters are refused by the call.
        """
        size = check_int("page_size", page_size, minimum=1, maximum=MAX_PAGE)
        if size is None:
            raise ValidationError("page_size", page_size, "must be a whole number")
        taken = {
            p.name
            for p in inspect.signature(method).parameters.values()
            if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
        } - {"limit", "offset"}
        unknown = sorted(set(filters) - taken)
        if unknown:
            name = unknown[0]
            raise ValidationError(
                name,
                filters[name],
                f"is not a filter of {method.__name__}(){keyword_hint(name, taken)}",
            )

        def page(after: str | None) -> list[T]:
            self._after = after
            try:
                return method(**filters, limit=size)
            finally:
                del self._after

        def every(first: list[T]) -> Iterator[T]:
            found = first
            while True:
                yield from found
                if len(found) < size:
                    return
                found = page(found[-1].id)  # type: ignore[attr-defined]

        return every(page(None))

    def _is_admin(self) -> bool:
        """The system actor, or a user with the ``admin`` role or in the admin department."""
        actor = self._s.actor
        return actor.is_system or "admin" in actor.roles or actor.department == "admin"

    def _require_admin(self, action: str, resource: str) -> None:
        if not self._is_admin():
            self._s._guard.deny(action, resource, None, "needs the admin role")

    def _require_org(self, action: str, resource: str) -> None:
        """Refuse unless the actor may run this part of the organisation or data model.

        Admins may, as ever; anyone else needs a policy grant of ``action``
        (``create``, ``update``, ``delete``) on ``resource`` (``user``, ``team``,
        ``department``, ``field_definition``), such as HR's grant on users. The
        write itself is then checked against the grant's scope and conditions
        and the field rules, like any other.
        """
        if not self._is_admin():
            self._s._guard.require_any(resource, action)


class RecordService(Service, Generic[R]):
    """Get, change, history and ``as_of`` for one record type."""

    record_type: type[R]
    events: ClassVar[Mapping[str, str]] = {}
    """action → signal name."""

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        """Field name → check returning the cleaned value (``emails``/``phones`` are handled apart)."""
        return {}

    def _parse(
        self,
        values: Mapping[str, Any],
        *,
        creating: bool,
        lenient: bool = False,
        current: R | None = None,
    ) -> dict[str, Any]:
        """Check every given field; raise one ValidationError listing every bad one.

        Records with contact points take ``email=``/``phone=`` beside
        ``emails=``/``phones=`` and a per-call ``phone_region=``. National phone
        numbers are read in ``phone_region``, else the record's address country
        (the given address, or ``current``'s), else the tenant's default region.
        An unknown keyword is refused with the closest known one as a hint.
        People given ``given_name``/``family_name`` without a ``name`` get one
        made from the parts (see :meth:`_derives_name`).
        """
        checkers = self._checkers()
        points = "contact_points" in attrs.fields_dict(self.record_type)
        values = dict(values)
        if points:
            fold_points(values)
        allowed = set(checkers) | ({"emails", "phones", "phone_region"} if points else set())
        unknown = sorted(set(values) - allowed)
        if unknown:
            known = allowed | ({"email", "phone"} if points else set())
            raise ValidationError(
                unknown[0],
                values[unknown[0]],
                f"is not a {self.record_type.resource} field{keyword_hint(unknown[0], known)}",
            )
        derive = self._derives_name(values, creating=creating, current=current)
        out: dict[str, Any] = {}
        with Checks() as checks:
            for name, value in values.items():
                if name in checkers and not (derive and name == "name"):
                    out[name] = checks(checkers[name], name, value)
            if derive:
                made = self._made_name(out, current)
                out["name"] = checks(check_text, "name", made or None, required=True)
            given_region = values.get("phone_region")
            if given_region is not None:
                given_region = checks(region_code, given_region, "phone_region")
            if points and (creating or "emails" in values or "phones" in values):
                address = out.get("address", getattr(current, "address", None))
                region = given_region or phone_region(
                    address.country if isinstance(address, Address) else None,
                    self._s.settings._default_region(),
                )
                out["contact_points"] = checks(
                    check_points,
                    values.get("emails", ()),
                    values.get("phones", ()),
                    region=region,
                    lenient=lenient,
                )
        return out

    def _derives_name(
        self, values: Mapping[str, Any], *, creating: bool, current: R | None
    ) -> bool:
        """Whether the display name is to be made from the name's parts.

        On create, when parts are given and ``name`` is not. On update, when
        parts are given, ``name`` is not, and the stored name was the one made
        from the stored parts (a name typed by hand is never overwritten).
        """
        if "family_name" not in attrs.fields_dict(self.record_type):
            return False
        if values.get("given_name") is None and values.get("family_name") is None:
            return False
        if creating:
            return values.get("name") is None
        return (
            "name" not in values
            and current is not None
            and current.name == self._made_name({}, current)  # type: ignore[attr-defined]
        )

    @staticmethod
    def _made_name(out: Mapping[str, Any], current: Any) -> str:
        """The name made from the parts in ``out`` (else ``current``'s), in the person's order."""

        def part(name: str) -> Any:
            return out[name] if name in out else getattr(current, name, None)

        address = part("address")
        country = address.country if isinstance(address, Address) else None
        return display_name(part("given_name"), part("family_name"), part("name_order"), country)

    @staticmethod
    def _replace_points(
        current: tuple[ContactPoint, ...], given: Mapping[str, Any], new: tuple[ContactPoint, ...]
    ) -> tuple[ContactPoint, ...]:
        """Keep the points of the kinds not given in an update; replace the others."""
        replaced = {PointKind.EMAIL} if "emails" in given else set()
        replaced |= {PointKind.PHONE} if "phones" in given else set()
        return tuple(p for p in current if p.kind not in replaced) + new

    @property
    def _repo(self) -> Repository[R]:
        return self._s._uow.repo(self.record_type)

    def get(self, id: str) -> R:
        """Return the record with ``id``; raise NotFound if there is none the actor may see.

        Fields the policy hides from the actor are None.
        """
        return self._s._guard.redact(self._load(id))

    def _load(self, id: str) -> R:
        """The whole record (nothing redacted), if the actor may read it."""
        check_id("id", id)
        found = self._repo.get(id)
        if found is None or not self._s._guard.allows(found, "read"):
            raise NotFound(self.record_type.resource, id)
        self._s._saw([found])
        return found

    def _find(
        self,
        where: Filter | None = None,
        *,
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        offset: int = 0,
    ) -> list[R]:
        """Records the actor may read, filtered in the query, hidden fields redacted.

        Inside :meth:`_pages`, the page after the last id it saw, in creation order.
        """
        where, order_by, offset = self._paged(where, order_by, offset)
        return self._s.read(self.record_type).find(
            where, order_by=order_by, limit=limit, offset=offset
        )

    screened: ClassVar[bool] = False
    """Whether creates and updates of this kind are checked for duplicates."""
    derived: ClassVar[frozenset[str]] = frozenset()
    """Fields pycrm sets as a consequence of others (a quote's costs follow its lines): a
    write that moves them needs the grant to write the others, not these."""

    def _chosen(self, names: Iterable[str]) -> list[str]:
        """The fields of ``names`` the actor chose to write (not :attr:`derived` ones)."""
        return [name for name in names if name not in self.derived]

    def _add(self, action: str, *, on_duplicate: str | None = None, **fields: Any) -> R:
        record = self.record_type(**self._s._stamp(**fields))
        self._s._guard.require(
            record, "create", self._chosen(k for k, v in fields.items() if v not in (None, (), ""))
        )
        if self.screened:
            absorbed = self._s.dedupe._screen(record, self._s.dedupe._policy(on_duplicate))
            if absorbed is not None:
                return absorbed  # type: ignore[no-any-return]
        self._repo.add(record)
        self._s._record(action, None, record, event=self.events.get(action))
        return record

    def _custom(self, current: Mapping[str, Any], given: Any, *, creating: bool) -> dict[str, Any]:
        """The record's new custom values, checked against the definitions and the actor's rights."""
        from pycrm.domain.custom_fields import check_custom
        from pycrm.services.fields import check_custom_writes, check_references

        defs = self._s._field_definitions(self.record_type.resource)
        if isinstance(given, Mapping):
            check_custom_writes(self._s, self.record_type.resource, list(given))
        checked = check_custom(defs, current, given, creating=creating)
        if isinstance(given, Mapping):
            check_references(self._s, defs, {k: checked.get(k) for k in given})
        return checked

    def _create(self, values: dict[str, Any], action: str = "create") -> R:
        """Check ``values`` and add the record (taking ``on_duplicate`` and ``lenient`` options)."""
        policy = values.pop("on_duplicate", None)
        lenient = check_bool("lenient", values.pop("lenient", False))
        custom = values.pop("custom", None)
        fields = self._parse(values, creating=True, lenient=lenient)
        if "custom" in attrs.fields_dict(self.record_type):
            fields["custom"] = self._custom({}, custom, creating=True)
        elif custom is not None:
            raise ValidationError(
                "custom", custom, f"{self.record_type.resource} has no custom fields"
            )
        return self._add(action, on_duplicate=policy, **fields)

    def _update(self, current: R, version: int | None, fields: dict[str, Any]) -> R:
        """Check ``fields`` and apply them; re-check duplicates when identity fields change."""
        policy = fields.pop("on_duplicate", None)
        lenient = check_bool("lenient", fields.pop("lenient", False))
        custom = fields.pop("custom", None)
        if "contact_points" in attrs.fields_dict(self.record_type):
            fold_points(fields)  # email= is emails=: the kind's list is replaced as a whole
        changes = self._parse(fields, creating=False, lenient=lenient, current=current)
        if custom is not None:
            changes["custom"] = self._custom(current.custom, custom, creating=False)  # type: ignore[attr-defined]
        if "contact_points" in changes:
            changes["contact_points"] = self._replace_points(
                current.contact_points,  # type: ignore[attr-defined]
                fields,
                changes["contact_points"],
            )
        identity = {"name", "company", "contact_points", "address"}
        if self.screened and identity & {k for k, v in changes.items() if getattr(current, k) != v}:
            chosen = self._s.dedupe._policy(policy)
            if chosen != "allow":
                self._s.dedupe._screen(
                    attrs.evolve(current, **changes), "warn" if chosen == "merge" else chosen
                )
        return self._change(current, version, "update", **changes)

    def _change(self, current: R, version: int | None, action: str, **changes: Any) -> R:
        if version is not None:
            if isinstance(version, bool) or not isinstance(version, int):
                raise ValidationError("version", version, "must be a whole number")
            if version != current.version:
                raise ConcurrencyError(current.resource, current.id, version, current.version)
        # Even a write that changes nothing was decided on what the session read.
        self._s._check_fresh(current)
        if all(getattr(current, k) == v for k, v in changes.items()):
            return current
        changed = [k for k, v in changes.items() if getattr(current, k) != v]
        self._s._guard.require(current, PERMISSION_FOR.get(action, "update"), self._chosen(changed))
        return self._s._revise(current, action, event=self.events.get(action), **changes)

    def history(self, id: str, field: str | None = None) -> list[FieldChange]:
        """Every change to the record, oldest first: who, which department, when, old → new.

        With ``field``, only that field's changes.
        """
        self.get(id)
        if field is not None and (
            not isinstance(field, str) or field not in attrs.fields_dict(self.record_type)
        ):
            raise ValidationError("field", field, f"{self.record_type.resource} has no such field")
        resource = self.record_type.resource
        entries = self._s._uow.repo(AuditEntry).find(
            And((Eq("record_id", id), Eq("record_type", resource))),
            order_by=[OrderBy("at"), OrderBy("id")],
        )
        # The guard's redaction, as for every audit entry: hidden fields' changes are dropped.
        return [
            FieldChange(name, old, new, entry.at, entry.actor_id, entry.department)
            for entry in map(self._s._guard.redact, entries)
            if not entry.action.startswith("denied:")
            for name, (old, new) in entry.field_changes().items()
            if field is None or name == field
        ]

    def as_of(self, id: str, when: datetime) -> R:
        """The record as it was at ``when``; NotFound if it did not exist yet."""
        check_when("when", when)
        self.get(id)
        resource = self.record_type.resource
        repo = self._s._uow.repo(AuditEntry)
        where = And(
            (Eq("record_id", id), Eq("record_type", resource), Range("at", None, _just_after(when)))
        )
        newest = [OrderBy("at", descending=True), OrderBy("id", descending=True)]
        entries: list[AuditEntry] = []
        # A snapshot lies within CHECKPOINT writes back (refused attempts aside): read in pages.
        while True:
            page = repo.find(where, order_by=newest, limit=CHECKPOINT + 8, offset=len(entries))
            entries += page
            state = replay(entries)
            if state is not None:
                return self._s._guard.redact(from_dict(self.record_type, state))
            if len(page) < CHECKPOINT + 8:
                raise NotFound(resource, id)


def _just_after(when: datetime) -> datetime:
    return when + timedelta(microseconds=1)
