"""Contacts: the people the business talks to."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from functools import partial
from typing import Any, ClassVar

from pycrm.domain.activities import Activity
from pycrm.domain.contact_points import search_key
from pycrm.domain.customers import Contact, Customer, RecordStatus
from pycrm.domain.fields import check_choice, check_tags, check_text
from pycrm.domain.names import NameOrder
from pycrm.domain.query import Eq, Filter, HasKey, In, OrderBy, all_of
from pycrm.services.records import RecordService, check_address, write
from pycrm.services.search import (
    category_filter,
    check_page,
    custom_filter,
    name_filters,
    point_filter,
    referenced,
    text_filter,
)

__all__ = ["ContactService"]


class ContactService(RecordService[Contact]):
    """People, usually working for a customer."""

    record_type = Contact
    screened = True
    events: ClassVar[Mapping[str, str]] = {
        "create": "contact_created",
        "update": "contact_updated",
        "archive": "contact_archived",
    }

    def _check_customer(self, field: str, value: Any) -> str | None:
        customer = referenced(self._s, Customer, field, value)
        return None if customer is None else customer.id

    def _checkers(self) -> dict[str, Callable[[str, Any], Any]]:
        return {
            "name": partial(check_text, required=True),
            "given_name": partial(check_text, limit=100),
            "family_name": partial(check_text, limit=100),
            "name_order": partial(check_choice, choices=NameOrder),
            "title": check_text,
            "customer_id": self._check_customer,
            "address": check_address,
            "tags": check_tags,
            "owner_id": self._check_user,
            "source": partial(check_text, limit=60),
            "categories": self._s.categories.check_paths,
        }

    @write
    def create(self, name: str | None = None, **fields: Any) -> Contact:
        """Create a contact.

        :param name: the person's full name, as they write it; made from
            ``given_name`` and ``family_name`` when only they are given
            (in the person's name order: ``name_order``, else family name
            first for CJK script or an address in such a country).
        :param fields: ``given_name``, ``family_name``, ``name_order``
            (``given_first``/``family_first``), ``customer_id``, ``title``,
            ``email``/``emails``, ``phone``/``phones`` (``phone_region`` for
            national numbers), ``address``, ``tags``, ``owner_id`` (see
            :meth:`CustomerService.create`).
        :raises ValidationError: naming every bad field.
        """
        return self._create({"name": name, **fields})

    @write
    def update(self, id: str, *, version: int | None = None, **fields: Any) -> Contact:
        """Change fields of a contact (``emails``/``phones`` replace that kind's list).

        Changing ``given_name`` or ``family_name`` remakes a name that was made
        from them; a name typed in is kept unless ``name`` is given.
        """
        return self._update(self._load(id), version, fields)

    @write
    def archive(self, id: str, *, version: int | None = None) -> Contact:
        """Archive a contact: it leaves searches and 360 views but keeps its history."""
        current = self._load(id)
        if current.status is RecordStatus.ARCHIVED:
            return current
        return self._change(
            current, version, "archive", status=RecordStatus.ARCHIVED, archived_at=self._s._now()
        )

    def iter(self, *, page_size: int = 500, **filters: Any) -> Iterator[Contact]:
        """Every contact :meth:`search` finds with ``filters``, however many there are.

        Takes the filters of :meth:`search` (not ``limit`` or ``offset``) and
        reads ``page_size`` at a time, in creation order: ``for x in
        s.contacts.iter(...)`` never stops at a page's end, and records created
        or changed meanwhile make it neither skip nor repeat one.
        """
        return self._pages(self.search, filters, page_size)

    def search(
        self,
        text: str | None = None,
        *,
        email: str | None = None,
        phone: str | None = None,
        company: str | None = None,
        customer_id: str | None = None,
        given_name: str | None = None,
        family_name: str | None = None,
        tag: str | None = None,
        category: str | None = None,
        custom: dict[str, Any] | None = None,
        include_archived: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Contact]:
        """Find contacts, ordered by name.

        Returns the first 50 by default (``limit`` up to 1,000, ``offset`` to page
        on); :meth:`iter` goes through every one, page by page.

        ``text`` matches anywhere in the name; ``company`` anywhere in the
        name of the contact's customer; ``email``, ``phone`` and ``tag`` are
        exact after normalisation and use an index.
        ``given_name`` and ``family_name`` find people whose name is known in
        those parts (ignoring case).
        """
        limit, offset = check_page(limit, offset)
        parts: list[Filter | None] = [text_filter("text", text)]
        parts += point_filter(email, phone, self._s.settings._default_region())
        if tag is not None:
            parts.append(HasKey("tag", search_key(check_text("tag", tag, required=True))))
        if customer_id is not None:
            parts.append(Eq("customer_id", check_text("customer_id", customer_id, required=True)))
        company_filter = text_filter("company", company)
        if company_filter is not None:
            companies = self._s.read(Customer).find(company_filter, limit=1000)
            parts.append(In("customer_id", [c.id for c in companies]))
        parts += category_filter(self._s, category)
        parts += custom_filter(self._s, "contact", custom)
        parts += name_filters(given_name, family_name)
        if not include_archived:
            parts.append(Eq("status", RecordStatus.ACTIVE))
        return self._find(all_of(parts), order_by=[OrderBy("name_key")], limit=limit, offset=offset)

    def timeline(
        self, id: str, *, limit: int = 50, before: datetime | None = None
    ) -> list[Activity]:
        """The contact's activities, newest first (other users' private notes left out).

        Returns the 50 newest by default (``limit`` up to 1,000); for the next page pass
        the last one's ``occurred_at`` as ``before``.
        """
        self._load(id)
        return self._s.activities.list(contact_id=id, limit=limit, before=before)
