"""Reading inbound mail (``pycrm.mail``) on messages pycrm did not write.

Two sources: CPython's own email test messages (``tests/data/mail/cpython``,
digests, forwards, delivery reports, broken headers), every one of which must
parse; and messages in the shapes mail clients send (Outlook and Gmail
auto-replies, an Exchange bounce, Foxmail in GB18030, a quoted-printable
ISO-8859-1 reply, an HTML-only web-form mail, a forwarded chain), each
written out as the client writes it, with what a reader sees worked out by
hand.
"""

from __future__ import annotations

import base64
import logging
import mailbox
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

import pycrm
from pycrm.errors import ConfigurationError, ValidationError
from pycrm.mail import (
    MailAcknowledgement,
    MemorySender,
    SmtpSender,
    TextMailer,
    find_token,
    html_to_text,
    parse_mail,
    read_maildir,
    read_mbox,
    ticket_token,
)
from pycrm.rules import hookimpl

CORPUS = Path(__file__).parent / "data" / "mail" / "cpython"

#: The test SMTP server asks for a password without TLS (on 127.0.0.1), which aiosmtpd warns of.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


# -- CPython's corpus ------------------------------------------------------------------------


def test_every_message_of_cpythons_corpus_parses_into_text_without_raising() -> None:
    names = sorted(p.name for p in CORPUS.glob("msg_*.txt"))
    assert len(names) >= 47
    for name in names:
        mail = parse_mail(corpus(name))
        assert isinstance(mail.subject, str)
        assert isinstance(mail.text, str)
        assert "\r" not in mail.text
        assert all(isinstance(a.data, bytes) for a in mail.attachments)


def test_a_plain_message_gives_its_sender_subject_date_and_body() -> None:
    mail = parse_mail(corpus("msg_01.txt"))
    # From: bbb@ddd.com (John X. Doe): the old form, the name in a comment
    assert (mail.sender, mail.sender_name, mail.subject) == (
        "bbb@ddd.com",
        "John X. Doe",
        "This is a test message",
    )
    assert mail.to == ("bbb@zzz.org",)
    assert mail.message_id == "15090.61304.110929.45684@aaa.zzz.org"
    assert mail.sent_at == datetime(2001, 5, 4, 18, 5, 44, tzinfo=UTC)  # 14:05:44 -0400
    assert mail.text == "Hi,\n\nDo you like this message?\n\n-Me"
    assert (mail.html, mail.attachments, mail.automatic) == (None, (), None)


def test_an_image_attachment_comes_back_as_its_bytes() -> None:
    mail = parse_mail(corpus("msg_07.txt"))  # "Here is your dingus fish", a GIF attached
    (fish,) = mail.attachments
    assert (fish.filename, fish.content_type) == ("dingusfish.gif", "image/gif")
    assert fish.data[:6] in (b"GIF87a", b"GIF89a")
    assert "dingus" in mail.text.lower()


def test_delivery_reports_and_mailer_daemons_are_machines() -> None:
    for name in ("msg_05.txt", "msg_25.txt", "msg_43.txt"):
        assert parse_mail(corpus(name)).automatic is not None, name
    assert parse_mail(corpus("msg_43.txt")).sender is None  # "MAILER DAEMON <>"


# -- the shapes clients send -----------------------------------------------------------------

OUTLOOK_OOF = b"""\
From: Maria Keller <m.keller@acme.example>
To: support@shop.example
Subject: Automatic reply: Your order 4711
Date: Mon, 2 Mar 2026 08:15:00 +0100
Message-ID: <AM0PR01MB1234.eurprd01.prod.outlook.com>
In-Reply-To: <ticket-1@shop.example>
X-Auto-Response-Suppress: All
Content-Type: text/plain; charset="us-ascii"

I am out of the office until 9 March.
"""

GMAIL_VACATION = b"""\
From: Tom <tom.novak@gmail.example>
To: support@shop.example
Subject: Re: Your order 4711
Auto-Submitted: auto-replied
Message-ID: <CAF=abc@mail.gmail.example>
Content-Type: text/plain; charset="UTF-8"

Thanks, I am on holiday.
"""

NEWSLETTER = b"""\
From: Deals <news@vendor.example>
To: support@shop.example
Subject: Spring sale
List-Id: Vendor news <news.vendor.example>
List-Unsubscribe: <mailto:leave@vendor.example>
Content-Type: text/plain; charset="UTF-8"

20% off.
"""

EXCHANGE_NDR = b"""\
From: Microsoft Outlook <postmaster@acme.example>
To: support@shop.example
Subject: Undeliverable: Your order 4711
Content-Type: text/plain; charset="us-ascii"

Delivery has failed to these recipients.
"""

# Foxmail writes Chinese mail in GB18030, the subject as an RFC 2047 word.
_GB_BODY = "您好，我们的包装机显示错误E42，请尽快处理。\n王伟"
FOXMAIL_GB18030 = (
    b"From: =?GB18030?B?"
    + base64.b64encode("王伟".encode("gb18030"))
    + b"?= <wang.wei@factory.example>\n"
    b"To: support@shop.example\n"
    b"Subject: =?GB18030?B?"
    + base64.b64encode("包装机故障 [#T-01a2b3c4d5e6f7a8]".encode("gb18030"))
    + b"?=\n"
    b"Date: Tue, 3 Mar 2026 10:00:00 +0800\n"
    b"Message-ID: <202603031000.abc@foxmail.example>\n"
    b"MIME-Version: 1.0\n"
    b'Content-Type: text/plain; charset="GB18030"\n'
    b"Content-Transfer-Encoding: base64\n\n" + base64.encodebytes(_GB_BODY.encode("gb18030"))
)

THUNDERBIRD_LATIN1_QP = b"""\
From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <jm@werk.example>
To: Support <support@shop.example>
Cc: einkauf@werk.example
Subject: =?ISO-8859-1?Q?Re:_Gr=FC=DFe_aus_K=F6ln?=
Date: Wed, 4 Mar 2026 16:20:00 +0100
Message-ID: <b7c1@werk.example>
In-Reply-To: <reply-2@shop.example>
References: <ticket-1@shop.example> <reply-2@shop.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1; format=flowed
Content-Transfer-Encoding: quoted-printable

Die Ma=DFe stimmen, vielen Dank f=FCr die schnelle L=F6sung.

> Bitte pr=FCfen Sie die Ma=DFe.
"""

WEBFORM_HTML_ONLY = b"""\
From: Website <forms@shop.example>
To: sales@shop.example
Subject: New enquiry
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: 8bit

<html><head><title>Form</title><style>p{color:red}</style></head>
<body><h1>Enquiry</h1><p>Name: Anna Schmidt</p><p>Message: 3 machines &amp; a service plan&nbsp;please</p>
<script>track()</script></body></html>
"""


def _forwarded() -> bytes:
    inner = EmailMessage()
    inner["From"] = "Customer <c@client.example>"
    inner["Subject"] = "Broken part"
    inner.set_content("The part broke after a day.")
    outer = EmailMessage()
    outer["From"] = "Sales <sales@shop.example>"
    outer["To"] = "support@shop.example"
    outer["Subject"] = "Fwd: Broken part"
    outer.set_content("Please take this one.")
    outer.add_attachment(inner)  # as message/rfc822, as clients forward
    outer.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf",
                         filename="Rechnung Nr. 7 \u00e4.pdf")  # fmt: skip
    return outer.as_bytes()


def test_auto_replies_bounces_and_lists_are_told_from_people() -> None:
    reasons = {
        name: parse_mail(raw).automatic
        for name, raw in (
            ("outlook", OUTLOOK_OOF),
            ("gmail", GMAIL_VACATION),
            ("list", NEWSLETTER),
            ("ndr", EXCHANGE_NDR),
            ("person", THUNDERBIRD_LATIN1_QP),
            ("gb18030", FOXMAIL_GB18030),
        )
    }
    assert reasons["person"] is None
    assert reasons["gb18030"] is None
    assert reasons["gmail"] == "Auto-Submitted: auto-replied"
    assert reasons["outlook"] == "X-Auto-Response-Suppress: all"
    assert reasons["list"] == "a mailing list (List-Id)"
    assert reasons["ndr"] == "sent by postmaster"


def test_an_outlook_auto_reply_by_its_subject_alone_is_a_machine() -> None:
    bare = OUTLOOK_OOF.replace(b"X-Auto-Response-Suppress: All\n", b"")
    assert parse_mail(bare).automatic == "an automatic subject (Automatic reply)"


def test_gb18030_names_subjects_and_bodies_are_decoded_and_the_token_found() -> None:
    mail = parse_mail(FOXMAIL_GB18030)
    assert (mail.sender_name, mail.sender) == ("王伟", "wang.wei@factory.example")
    assert mail.subject == "包装机故障 [#T-01a2b3c4d5e6f7a8]"
    assert mail.text == _GB_BODY
    assert mail.token == "01a2b3c4d5e6f7a8"
    assert mail.sent_at == datetime(2026, 3, 3, 2, 0, tzinfo=UTC)


def test_a_quoted_printable_latin1_reply_is_decoded_and_threads_to_what_it_answers() -> None:
    mail = parse_mail(THUNDERBIRD_LATIN1_QP)
    assert (mail.sender_name, mail.subject) == ("Jürgen Müller", "Re: Grüße aus Köln")
    assert mail.text.splitlines()[0] == "Die Maße stimmen, vielen Dank für die schnelle Lösung."
    assert mail.to == ("support@shop.example", "einkauf@werk.example")
    assert mail.thread_ids == ("reply-2@shop.example", "ticket-1@shop.example")


def test_an_html_only_message_reads_as_its_visible_text() -> None:
    mail = parse_mail(WEBFORM_HTML_ONLY)
    assert mail.text == (
        "Enquiry\n\nName: Anna Schmidt\n\nMessage: 3 machines & a service plan please"
    )
    assert mail.html is not None
    assert "track()" not in mail.text


def test_a_forward_keeps_its_note_and_an_attachment_with_a_non_ascii_name() -> None:
    mail = parse_mail(_forwarded())
    assert mail.subject == "Fwd: Broken part"
    assert mail.text.splitlines()[0] == "Please take this one."
    assert "The part broke after a day." in mail.text  # the forwarded message's text
    (invoice,) = mail.attachments
    assert (invoice.filename, invoice.content_type, invoice.data) == (
        "Rechnung Nr. 7 ä.pdf",
        "application/pdf",
        b"%PDF-1.4 invoice",
    )


def test_an_unknown_charset_and_broken_bytes_become_replacement_characters() -> None:
    raw = (
        b"From: x@y.example\nSubject: odd\nContent-Type: text/plain; charset=x-unknown\n\n"
        b"caf\xe9 \xff ok\n"
    )
    mail = parse_mail(raw)
    assert mail.text == "caf\ufffd \ufffd ok"


def test_text_and_message_objects_parse_like_bytes_and_other_input_is_refused() -> None:
    as_bytes = parse_mail(THUNDERBIRD_LATIN1_QP)
    assert parse_mail(THUNDERBIRD_LATIN1_QP.decode("ascii")) == as_bytes
    import email

    assert parse_mail(email.message_from_bytes(THUNDERBIRD_LATIN1_QP)) == as_bytes
    for wrong in (None, 5, ["a"]):
        with pytest.raises(ValidationError) as caught:
            parse_mail(wrong)  # type: ignore[arg-type]
        assert caught.value.field == "message"


def test_ticket_tokens_round_trip_and_only_the_token_form_counts() -> None:
    token = ticket_token("01a2b3c4d5e6f7a8")
    assert find_token(f"Re: Re: your ticket {token}") == "01a2b3c4d5e6f7a8"
    assert find_token("Re: [#T-01A2B3C4D5E6F7A8] upper case") == "01a2b3c4d5e6f7a8"
    assert find_token("order #T-01a2b3c4 without brackets") is None
    assert find_token("") is None


def test_mbox_and_maildir_give_every_message_in_order(tmp_path: Path) -> None:
    box = mailbox.mbox(tmp_path / "in.mbox")
    for raw in (THUNDERBIRD_LATIN1_QP, OUTLOOK_OOF, corpus("msg_01.txt")):
        box.add(raw)
    box.close()
    assert [m.subject for m in read_mbox(tmp_path / "in.mbox")] == [
        "Re: Grüße aus Köln",
        "Automatic reply: Your order 4711",
        "This is a test message",
    ]
    maildir = mailbox.Maildir(tmp_path / "Maildir")
    for raw in (GMAIL_VACATION, NEWSLETTER):
        maildir.add(raw)
    assert sorted(m.subject for m in read_maildir(tmp_path / "Maildir")) == [
        "Re: Your order 4711",
        "Spring sale",
    ]


def test_html_to_text_keeps_blocks_on_lines_and_drops_what_is_not_shown() -> None:
    html = "<div>One<br>Two</div><ul><li>a &lt; b</li><li>c</li></ul><style>x{}</style>"
    assert html_to_text(html) == "One\nTwo\n\na < b\n\nc"


# -- email to ticket (s.tickets.receive_mail) on every backend --------------------------------

FIRST = b"""\
From: =?ISO-8859-1?Q?J=FCrgen_M=FCller?= <JM@Werk.example>
To: support@shop.example
Subject: Maschine steht
Date: Mon, 2 Mar 2026 09:00:00 +0100
Message-ID: <ticket-1@shop.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b1"

--b1
Content-Type: text/plain; charset=utf-8

Die Presse zeigt E42.
--b1
Content-Type: image/png
Content-Disposition: attachment; filename="display.png"
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--b1--
"""


def test_an_email_opens_a_ticket_for_the_contact_and_its_attachment_becomes_a_document(
    crm: pycrm.CRM,
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        werk = s.customers.create("Werk AG")
        jm = s.contacts.create("Jürgen Müller", customer_id=werk.id, emails=["jm@werk.example"])
        receipt = s.tickets.receive_mail(FIRST, category="machines", priority="high")
        ticket = receipt.record
        assert ticket is not None
        (document,) = s.documents.list("ticket", ticket.id)
    assert (receipt.outcome, receipt.document_ids) == ("opened", (document.id,))
    assert (ticket.subject, ticket.description, ticket.channel.value) == (
        "Maschine steht",
        "Die Presse zeigt E42.",
        "email",
    )
    assert (ticket.contact_id, ticket.customer_id) == (jm.id, werk.id)  # by email, any case
    assert (ticket.category, ticket.priority.value) == ("machines", "high")
    assert ticket.mail_ids == ("ticket-1@shop.example",)
    assert (document.name, document.content_type) == ("display.png", "image/png")


def test_replies_thread_by_headers_or_token_reopen_resolved_tickets_and_run_once(
    crm: pycrm.CRM,
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        agent = s.org.create_user(name="Li", email="li@shop.example", department="service")
        opened = s.tickets.receive_mail(FIRST).record
        assert opened is not None
        s.tickets.assign(opened.id, agent.id)
        s.tickets.start(opened.id)
        s.tickets.resolve(opened.id)
        again = s.tickets.receive_mail(FIRST)  # the mailbox read twice
        reply = s.tickets.receive_mail(THUNDERBIRD_LATIN1_QP)  # In-Reply-To <reply-2@…>,
        # References <ticket-1@…>: the first email's id
        by_token = s.tickets.receive_mail(
            "From: x@y.example\nSubject: AW: Re: "
            + ticket_token(opened.id)
            + "\nMessage-ID: <t-3@y.example>\n\nNoch eine Frage.\n"
        )
        ignored = s.tickets.receive_mail(OUTLOOK_OOF)  # answers ticket-1 too, but a machine
        final = s.tickets.get(opened.id)
        tickets = s.tickets.list()
    assert (again.outcome, again.record and again.record.id) == ("duplicate", opened.id)
    assert (reply.outcome, reply.reason) == ("replied", "it answers an email of the ticket")
    assert (by_token.outcome, by_token.reason) == (
        "replied",
        f"the subject names ticket {opened.id}",
    )
    assert (ignored.outcome, ignored.record) == ("ignored", None)
    assert len(tickets) == 1
    assert (final.status.value, final.assignee_id) == ("assigned", agent.id)  # reopened
    bodies = [m.body for m in final.messages if m.author_id == "customer"]
    assert bodies == [
        "Die Maße stimmen, vielen Dank für die schnelle Lösung.\n\n> Bitte prüfen Sie die Maße.",
        "Noch eine Frage.",
    ]
    assert final.mail_ids == ("ticket-1@shop.example", "b7c1@werk.example", "t-3@y.example")


def test_an_unknown_sender_opens_a_ticket_without_a_contact_and_says_so(
    crm: pycrm.CRM,
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        receipt = s.tickets.receive_mail(FOXMAIL_GB18030)
    assert receipt.outcome == "opened"
    assert receipt.reason == "no contact has wang.wei@factory.example"
    assert receipt.record is not None
    assert (receipt.record.contact_id, receipt.record.subject) == (
        None,
        "包装机故障 [#T-01a2b3c4d5e6f7a8]",  # a token naming no ticket threads nothing
    )


def test_a_refused_email_leaves_no_ticket_behind(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as caught:
            s.tickets.receive_mail(FIRST, priority="whenever")
        assert caught.value.field == "priority"
        assert s.tickets.list() == []
        with pytest.raises(ValidationError):
            s.tickets.receive_mail(12)  # type: ignore[arg-type]


# -- email to lead (s.leads.receive_mail) -----------------------------------------------------


def test_an_email_to_sales_is_captured_as_a_lead_once_with_its_attachment(
    crm: pycrm.CRM,
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        first = s.leads.receive_mail(FIRST, campaign="Hannover fair")
        again = s.leads.receive_mail(FIRST)
        ignored = s.leads.receive_mail(GMAIL_VACATION)
        lead = s.leads.get(first.record.id)
        (document,) = s.documents.list("lead", lead.id)
    assert (first.outcome, again.outcome, ignored.outcome) == ("captured", "duplicate", "ignored")
    assert again.record.id == lead.id
    assert (lead.name, lead.source, lead.campaign) == ("Jürgen Müller", "email", "Hannover fair")
    assert [p.value for p in lead.contact_points] == ["JM@werk.example"]
    assert lead.needs == "Die Presse zeigt E42."
    assert first.document_ids == (document.id,)
    assert document.name == "display.png"


def test_an_email_without_a_sender_is_refused_naming_the_message(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as caught:
            s.leads.receive_mail(b"Subject: who?\nMessage-ID: <n@x>\n\nhello\n")
        assert caught.value.field == "message"
        assert s.leads.search() == []


def test_control_characters_in_names_and_file_names_are_dropped() -> None:
    raw = (
        b"From: =?utf-8?q?Ann=00a_=1B?= <ann@x.example>\nSubject: Hi\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="b"\n\n--b\nContent-Type: text/plain\n\nHi\n'
        b"--b\nContent-Type: application/pdf\nContent-Disposition: attachment;"
        b' filename="=?utf-8?q?bill=07.pdf?="\nContent-Transfer-Encoding: base64\n\nJVBERg==\n--b--\n'
    )
    mail = parse_mail(raw)
    assert mail.sender_name == "Anna"
    assert [a.filename for a in mail.attachments] == ["bill.pdf"]


# -- s.mail.receive: one entry for both desks ---------------------------------------------------


def test_s_mail_receive_takes_an_email_to_a_ticket_or_a_lead(crm: pycrm.CRM) -> None:
    with crm.session(actor=crm.system_actor) as s:
        ticket = s.mail.receive(FIRST, category="machines", priority="high")
        lead = s.mail.receive(FIRST, to="lead", campaign="Fair")
        again = s.mail.receive(FIRST)
    assert (ticket.outcome, lead.outcome, again.outcome) == ("opened", "captured", "duplicate")
    assert (ticket.record.category, ticket.record.priority.value) == ("machines", "high")
    assert (lead.record.source, lead.record.campaign) == ("email", "Fair")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"to": "deal"}, "to"),
        ({"to": "lead", "category": "machines"}, "category"),
        ({"to": "lead", "priority": "high"}, "priority"),
        ({"source": "email"}, "source"),
        ({"campaign": "Fair"}, "campaign"),
        ({"priority": "whenever"}, "priority"),
    ],
)
def test_s_mail_receive_refuses_options_for_the_other_desk_naming_them(
    crm: pycrm.CRM, options: dict[str, Any], field: str
) -> None:
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError) as caught:
            s.mail.receive(FIRST, **options)
        assert caught.value.field == field
        assert (s.tickets.list(), s.leads.search()) == ([], [])


# -- sending: a real SMTP server (aiosmtpd) on a free port ---------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Inbox:
    """What the SMTP server received; refuses recipients at ``refused.example``."""

    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook names
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.endswith("@refused.example"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(envelope)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        return [
            message_from_bytes(e.content.replace(b"\r\n", b"\n"), policy=policy.default)
            for e in self.envelopes
        ]


def _login(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (b"desk", b"s3cret")
    return AuthResult(success=ok, handled=False)  # False: the server answers 535 itself


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server: AUTH required (user desk, password s3cret), no TLS."""
    inbox = Inbox()
    port = free_port()
    server = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        authenticator=_login,
        auth_required=True,
        auth_require_tls=False,
        # aiosmtpd's LOGIN waits for what smtplib sends at once (an initial response);
        # PLAIN is what real servers are asked first anyway.
        auth_exclude_mechanism=["LOGIN"],
    )
    server.start()
    try:
        yield inbox, port
    finally:
        server.stop()


@pytest.fixture
def smtp_sender(
    smtp: tuple[Inbox, int], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., SmtpSender]:
    monkeypatch.setenv("PYCRM_TEST_SMTP_PASSWORD", "s3cret")

    def make(**options: Any) -> SmtpSender:
        settings: dict[str, Any] = {
            "security": "plain",
            "username": "desk",
            "password_env": "PYCRM_TEST_SMTP_PASSWORD",
            "from_address": "support@shop.example",
            "timeout": 10,
            **options,
        }
        return SmtpSender("127.0.0.1", smtp[1], **settings)

    return make


def test_smtp_sender_logs_in_and_delivers_with_from_date_and_message_id_added(
    smtp: tuple[Inbox, int], smtp_sender: Callable[..., SmtpSender]
) -> None:
    message = EmailMessage()
    message["To"] = "anna@acme.example"
    message["Bcc"] = "archive@shop.example"
    message["Subject"] = "Ihre Anfrage · 您的请求"
    message.set_content("Grüße\n")
    smtp_sender().send(message)
    (envelope,) = smtp[0].envelopes
    assert envelope.mail_from == "support@shop.example"
    assert envelope.rcpt_tos == ["anna@acme.example", "archive@shop.example"]
    (got,) = smtp[0].messages()
    assert got["Bcc"] is None  # smtplib leaves Bcc out of what it sends
    assert (got["From"], got["Subject"]) == ("support@shop.example", "Ihre Anfrage · 您的请求")
    assert got["Message-ID"].endswith("@shop.example>")
    assert got["Date"]
    assert got.get_content() == "Grüße\n"


def test_smtp_sender_errors_name_what_is_wrong(
    smtp: tuple[Inbox, int],
    smtp_sender: Callable[..., SmtpSender],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def message(to: str = "anna@acme.example") -> EmailMessage:
        made = EmailMessage()
        made["To"] = to
        made["Subject"] = "Hi"
        made.set_content("Hi")
        return made

    monkeypatch.setenv("PYCRM_TEST_SMTP_PASSWORD", "wrong")
    with pytest.raises(ConfigurationError, match="refused the login of 'desk'"):
        smtp_sender().send(message())
    monkeypatch.setenv("PYCRM_TEST_SMTP_PASSWORD", "s3cret")
    with pytest.raises(ConfigurationError, match="does not offer STARTTLS"):
        smtp_sender(security="starttls").send(message())
    with pytest.raises(ValidationError) as refused:
        smtp_sender().send(message("x@refused.example"))
    assert refused.value.field == "To"
    with pytest.raises(ValidationError) as nobody:
        smtp_sender().send(EmailMessage())
    assert nobody.value.field == "To"
    with pytest.raises(ValidationError) as no_from:
        smtp_sender(from_address=None).send(message())
    assert no_from.value.field == "From"
    with pytest.raises(ConfigurationError, match="could not send through the SMTP server"):
        SmtpSender("127.0.0.1", free_port(), security="plain", from_address="a@b.example").send(
            message()
        )
    assert smtp[0].envelopes == []
    monkeypatch.delenv("PYCRM_TEST_SMTP_PASSWORD")
    for options, says in (
        ({}, "PYCRM_TEST_SMTP_PASSWORD is not set"),
        ({"security": "tls", "username": None, "password_env": None}, "security 'tls'"),
        ({"password_env": None}, "username needs password_env"),
        ({"from_address": "not an address", "username": None, "password_env": None}, "from_"),
    ):
        with pytest.raises(ConfigurationError, match=says):
            smtp_sender(**options)
    with pytest.raises(ConfigurationError, match="port 70000"):
        SmtpSender("127.0.0.1", 70000)


def test_text_mailer_gives_the_web_forms_mail_port_an_smtp_server(
    smtp: tuple[Inbox, int], smtp_sender: Callable[..., SmtpSender]
) -> None:
    from pycrm.web import Mailer

    mailer = TextMailer(smtp_sender())
    assert isinstance(mailer, Mailer)
    mailer.send("anna@acme.example", "Please confirm", "Click the link.")
    (got,) = smtp[0].messages()
    assert (got["To"], got["Subject"], got.get_content()) == (
        "anna@acme.example",
        "Please confirm",
        "Click the link.\n",
    )
    with pytest.raises(ValidationError) as caught:
        mailer.send("", "x", "y")
    assert caught.value.field == "To"


# -- acknowledging the email that opened a ticket ----------------------------------------------


def test_hook_pycrm_mail_acknowledgement(
    connect_crm: Callable[..., pycrm.CRM],
    smtp: tuple[Inbox, int],
    smtp_sender: Callable[..., SmtpSender],
) -> None:
    """A plugin's acknowledgement goes out through a real SMTP server after the commit,
    completed so that the customer's reply threads back to the ticket."""
    asked: list[tuple[str, str | None]] = []

    class Ours:
        @hookimpl
        def pycrm_mail_acknowledgement(
            self, ticket: Any, mail: Any, ctx: Any
        ) -> EmailMessage | None:
            asked.append((ticket.id, mail.message_id))
            assert ctx.session.tickets.get(ticket.id).subject == "Maschine steht"
            made = EmailMessage()
            made["Subject"] = f"Wir kümmern uns: {mail.subject}"
            made.set_content(f"Ticket {ticket.id}")
            return made

    crm = connect_crm(mail_sender=smtp_sender())
    crm.plugins.register(Ours(), name="ours")
    with crm.session(actor=crm.system_actor) as s:
        receipt = s.mail.receive(FIRST)
        assert smtp[0].envelopes == []  # nothing before the commit
    ticket = receipt.record
    assert asked == [(ticket.id, "ticket-1@shop.example")]
    (got,) = smtp[0].messages()
    assert smtp[0].envelopes[0].rcpt_tos == ["JM@Werk.example"]
    assert got["Subject"] == f"Wir kümmern uns: Maschine steht {ticket_token(ticket.id)}"
    assert (got["From"], got["To"]) == ("support@shop.example", "JM@Werk.example")
    assert (got["In-Reply-To"], got["References"]) == (
        "<ticket-1@shop.example>",
        "<ticket-1@shop.example>",
    )
    assert got["Auto-Submitted"] == "auto-replied"
    assert got.get_content().strip() == f"Ticket {ticket.id}"
    # The customer answers the acknowledgement: it threads to the ticket, and a reply is
    # never acknowledged; the acknowledgement itself coming back is a machine's mail.
    answer = (
        b"From: JM@Werk.example\nSubject: Re: " + got["Subject"].encode() + b"\n"
        b"Message-ID: <ticket-2@shop.example>\nIn-Reply-To: " + got["Message-ID"].encode() + b"\n"
        b"\nDanke.\n"
    )
    with crm.session(actor=crm.system_actor) as s:
        replied = s.mail.receive(answer)
        echoed = s.mail.receive(got.as_bytes())
        duplicate = s.mail.receive(FIRST)
    assert (replied.outcome, replied.record.id) == ("replied", ticket.id)
    assert (echoed.outcome, duplicate.outcome) == ("ignored", "duplicate")
    assert len(smtp[0].envelopes) == 1
    assert len(asked) == 1


def test_the_built_in_acknowledgement_answers_when_no_plugin_does(
    connect_crm: Callable[..., pycrm.CRM],
) -> None:
    sender = MemorySender(from_address="support@shop.example")
    crm = connect_crm(mail_sender=sender)
    assert isinstance(crm.plugins.get_plugin("pycrm.acknowledgement"), MailAcknowledgement)
    with crm.session(actor=crm.system_actor) as s:
        ticket = s.mail.receive(FIRST.replace(b"Maschine steht", b"AW: Re: Maschine steht")).record
        s.mail.receive(GMAIL_VACATION)  # a machine: no ticket, no answer
        s.mail.receive(b"From: support@shop.example\nSubject: test\n\nour own\n")  # a loop
    (sent,) = sender.sent
    assert sent["Subject"] == f"Re: Maschine steht {ticket_token(ticket.id)}"
    assert sent.get_content().startswith("Hello Jürgen Müller,")
    assert ticket_token(ticket.id) in sent.get_content()
    with pytest.raises(ConfigurationError, match="MailAcknowledgement text template"):
        MailAcknowledgement(text="Dear {customer}")


def test_no_acknowledgement_for_work_rolled_back_or_without_a_sender(
    connect_crm: Callable[..., pycrm.CRM],
) -> None:
    sender = MemorySender(from_address="support@shop.example")
    crm = connect_crm(mail_sender=sender)

    def then_fail() -> None:
        with crm.session(actor=crm.system_actor) as s:
            assert s.mail.receive(FIRST).outcome == "opened"  # the plugin has answered
            raise RuntimeError("the caller's own work failed")

    with pytest.raises(RuntimeError):
        then_fail()
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ValidationError):  # a refused email: no ticket, no mail
            s.tickets.receive_mail(FIRST, priority="x")
        assert s.tickets.list() == []
    assert sender.sent == []
    quiet = connect_crm()  # no mail_sender: nothing is asked or sent
    assert quiet.plugins.get_plugin("pycrm.acknowledgement") is None
    with quiet.session(actor=quiet.system_actor) as s:
        assert s.mail.receive(FIRST).outcome == "opened"


def test_a_broken_acknowledgement_plugin_undoes_the_intake_naming_the_plugin(
    connect_crm: Callable[..., pycrm.CRM],
) -> None:
    class Wrong:
        @hookimpl
        def pycrm_mail_acknowledgement(self, ticket: Any) -> Any:
            return "thanks!"

    crm = connect_crm(mail_sender=MemorySender(from_address="support@shop.example"))
    crm.plugins.register(Wrong(), name="wrong")
    with crm.session(actor=crm.system_actor) as s:
        with pytest.raises(ConfigurationError, match="plugin 'wrong' returned 'thanks!'"):
            s.mail.receive(FIRST)
        assert s.tickets.list() == []
    with pytest.raises(ConfigurationError, match="mail_sender must have a send"):
        connect_crm(mail_sender=object())


def test_a_failed_send_is_logged_and_the_ticket_stays(
    connect_crm: Callable[..., pycrm.CRM], caplog: pytest.LogCaptureFixture
) -> None:
    sender = MemorySender(from_address="support@shop.example", fail=OSError("relay down"))
    crm = connect_crm(mail_sender=sender)
    with (
        caplog.at_level(logging.WARNING, logger="pycrm.mail"),
        crm.session(actor=crm.system_actor) as s,
    ):
        ticket = s.mail.receive(FIRST).record
    assert f"the acknowledgement of ticket {ticket.id} was not sent" in caplog.text
    assert "relay down" in caplog.text
    with crm.session(actor=crm.system_actor) as s:
        assert [t.id for t in s.tickets.list()] == [ticket.id]
