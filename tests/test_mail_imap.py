"""Email intake from a real IMAP server (``pycrm.imap``, ``pycrm mail --imap``).

The server is Dovecot, started by ``.ci/start-dovecot.sh``, which prints
``PYCRM_TEST_IMAP_URL`` (these tests skip without one, unless
``PYCRM_REQUIRE_IMAP=1``, as in CI, in which case they fail). Each test works
in folders of its own, so tests may run side by side; messages are delivered
with IMAP APPEND.
"""

from __future__ import annotations

import imaplib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import pycrm
from pycrm.errors import ConfigurationError
from pycrm.imap import ImapPoller, imap_address
from pycrm.mail import MemorySender, ticket_token

IMAP_URL = os.environ.get("PYCRM_TEST_IMAP_URL")
IMAP_REQUIRED = os.environ.get("PYCRM_REQUIRE_IMAP") == "1"
CORPUS = Path(__file__).parent / "data" / "mail" / "cpython"

PERSON = (CORPUS / "msg_01.txt").read_bytes()  # John X. Doe: "This is a test message"
WITH_GIF = (CORPUS / "msg_07.txt").read_bytes()  # a GIF attached
BOUNCE = (CORPUS / "msg_05.txt").read_bytes()  # a delivery report: a machine's mail
REPLY = (
    b"From: bbb@ddd.com (John X. Doe)\r\nSubject: Re: This is a test message\r\n"
    b"Message-ID: <reply-1@ddd.com>\r\nIn-Reply-To: <15090.61304.110929.45684@aaa.zzz.org>\r\n"
    b"\r\nAnd another thing.\r\n"
)
NO_SENDER = b"Subject: who wrote this?\r\nMessage-ID: <anon-1@x.example>\r\n\r\nhello\r\n"


class Server:
    """The test IMAP server: the URL of one folder of this test's own, and a client."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.base = url.rsplit("/", 1)[0]
        self.host, self.port = parts.hostname or "", parts.port or 143
        self.user, self.password = parts.username or "", parts.password or ""
        self.folder = "t" + uuid.uuid4().hex[:12]
        self.client = imaplib.IMAP4(self.host, self.port, timeout=10)
        self.client.login(self.user, self.password)
        self.client.create(self.folder)

    def url(self, folder: str | None = None, *, password: bool = True) -> str:
        base = self.base if password else self.base.replace(f":{self.password}@", "@")
        return f"{base}/{folder or self.folder}"

    def deliver(self, *messages: bytes) -> None:
        for raw in messages:
            kind, _ = self.client.append(self.folder, None, None, raw)
            assert kind == "OK"

    def uids(self, criteria: str = "ALL", folder: str | None = None) -> list[int]:
        self.client.select(folder or self.folder)
        try:
            kind, data = self.client.uid("SEARCH", criteria)
            assert kind == "OK"
            return [int(n) for n in (data[0] or b"").split()]
        finally:
            self.client.close()

    def mark_unseen(self) -> None:
        self.client.select(self.folder)
        self.client.uid("STORE", "1:*", "-FLAGS.SILENT", r"(\Seen)")
        self.client.close()


@pytest.fixture
def imap() -> Iterator[Server]:
    if not IMAP_URL:
        if IMAP_REQUIRED:
            pytest.fail("PYCRM_REQUIRE_IMAP=1 but PYCRM_TEST_IMAP_URL is not set")
        pytest.skip("no IMAP server: eval $(bash .ci/start-dovecot.sh) sets PYCRM_TEST_IMAP_URL")
    try:
        server = Server(IMAP_URL)
    except (OSError, imaplib.IMAP4.error) as exc:
        pytest.fail(f"the IMAP server at {IMAP_URL} does not answer: {exc}")
    try:
        yield server
    finally:
        server.client.logout()


def test_a_poll_opens_and_threads_tickets_marks_mail_seen_and_a_second_poll_does_nothing(
    imap: Server,
) -> None:
    imap.deliver(PERSON, WITH_GIF, BOUNCE, REPLY)
    crm = pycrm.connect("memory://")
    poller = ImapPoller(imap.url(), batch=3)
    report = poller.poll(crm, actor=crm.system_actor, category="inbox")
    assert report.counts == {
        "opened": 2,
        "replied": 1,
        "captured": 0,
        "duplicate": 0,
        "ignored": 1,
        "refused": 0,
    }
    assert (report.refusals, report.total) == ((), 4)
    with crm.session(actor=crm.system_actor) as s:
        tickets = {t.subject: t for t in s.tickets.list()}
        assert set(tickets) == {"This is a test message", "Here is your dingus fish"}
        first = tickets["This is a test message"]
        assert first.category == "inbox"
        assert first.channel.value == "email"
        assert first.mail_ids == ("15090.61304.110929.45684@aaa.zzz.org", "reply-1@ddd.com")
        (gif,) = s.documents.list("ticket", tickets["Here is your dingus fish"].id)
        assert gif.name == "dingusfish.gif"
    assert imap.uids("UNSEEN") == []
    assert len(imap.uids("SEEN")) == 4
    again = poller.poll(crm, actor=crm.system_actor)
    assert again.total == 0
    imap.mark_unseen()  # as if the flags were lost: intake knows the emails it received
    third = poller.poll(crm, actor=crm.system_actor)
    # ... by their Message-ID: the dingus fish has none, so only its flag kept it from
    # being read twice (docs/mail.md says so).
    assert (third.counts["duplicate"], third.counts["ignored"], third.counts["opened"]) == (2, 1, 1)
    with crm.session(actor=crm.system_actor) as s:
        assert len(s.tickets.list()) == 3


def test_taken_mail_moves_to_the_processed_folder_and_refused_mail_to_the_error_folder(
    imap: Server,
) -> None:
    imap.deliver(PERSON, NO_SENDER, BOUNCE)
    crm = pycrm.connect("memory://")
    done, errors = f"{imap.folder}/Processed", f"{imap.folder}/Errors"
    poller = ImapPoller(imap.url(), processed_folder=done, error_folder=errors)
    report = poller.poll(crm, actor=crm.system_actor, to="lead", campaign="Fair")
    assert (report.counts["captured"], report.counts["ignored"]) == (1, 1)
    assert report.counts["refused"] == 1
    (refusal,) = report.refusals
    assert refusal.reason.startswith("message:")
    assert "no sender address" in refusal.reason
    assert imap.uids() == []  # the folder read is empty
    assert len(imap.uids("SEEN", done)) == 2
    assert len(imap.uids("ALL", errors)) == 1
    with crm.session(actor=crm.system_actor) as s:
        (lead,) = s.leads.search()
        assert (lead.name, lead.campaign) == ("John X. Doe", "Fair")
    assert poller.poll(crm, actor=crm.system_actor, to="lead").total == 0


def test_refused_mail_stays_unseen_by_default_and_is_read_again(imap: Server) -> None:
    imap.deliver(NO_SENDER, PERSON)
    crm = pycrm.connect("memory://")
    poller = ImapPoller(imap.url())
    first = poller.poll(crm, actor=crm.system_actor, to="lead")
    assert (first.counts["refused"], first.counts["captured"]) == (1, 1)
    assert imap.uids("UNSEEN") == [first.refusals[0].uid]
    second = poller.poll(crm, actor=crm.system_actor, to="lead")
    assert (second.counts["refused"], second.total) == (1, 1)


def test_bad_credentials_and_folders_are_configuration_errors_naming_them(
    imap: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    crm = pycrm.connect("memory://")
    wrong = ImapPoller(imap.url(password=False), password="not-the-password")
    with pytest.raises(ConfigurationError, match=f"the login of '{imap.user}' was refused"):
        wrong.poll(crm, actor=crm.system_actor)
    monkeypatch.setenv("PYCRM_TEST_IMAP_SECRET", imap.password)
    missing = ImapPoller(
        imap.url("no-such-folder", password=False), password_env="PYCRM_TEST_IMAP_SECRET"
    )
    with pytest.raises(ConfigurationError, match="select folder 'no-such-folder'"):
        missing.poll(crm, actor=crm.system_actor)
    with pytest.raises(ConfigurationError, match="does not offer STARTTLS"):
        ImapPoller(imap.url(), security="starttls").poll(crm, actor=crm.system_actor)
    monkeypatch.delenv("PYCRM_TEST_IMAP_SECRET")
    with pytest.raises(ConfigurationError, match="PYCRM_TEST_IMAP_SECRET is not set"):
        ImapPoller(imap.url(password=False), password_env="PYCRM_TEST_IMAP_SECRET")
    with pytest.raises(ConfigurationError, match="give password_env"):
        ImapPoller(imap.url(password=False))


def test_imap_urls_are_read_or_refused_naming_the_problem() -> None:
    address = imap_address("imaps://support%40shop.example@mail.shop.example/Support/In%20box")
    assert (address.security, address.port, address.username, address.folder) == (
        "ssl",
        993,
        "support@shop.example",
        "Support/In box",
    )
    assert imap_address("imap://u@mail.example").security == "starttls"
    assert imap_address("imap://u@mail.example").loose is False
    assert imap_address("imap://u@127.0.0.1:1143").loose is True
    for url, says in (
        ("pop3://u@h/INBOX", "must begin imaps://"),
        ("imaps:///INBOX", "names no host"),
        ("imaps://mail.example/INBOX", "names no user"),
        ("imaps://u:secret@h:99999/INBOX", r"imaps://u:\*\*\*@h"),
    ):
        with pytest.raises(ConfigurationError, match=says):
            imap_address(url)


def test_an_acknowledgement_goes_out_for_a_ticket_opened_from_imap(imap: Server) -> None:
    imap.deliver(PERSON, REPLY)
    sender = MemorySender(from_address="support@shop.example")
    crm = pycrm.connect("memory://", mail_sender=sender)
    report = ImapPoller(imap.url()).poll(crm, actor=crm.system_actor)
    assert (report.counts["opened"], report.counts["replied"]) == (1, 1)
    (sent,) = sender.sent  # the reply is not acknowledged
    with crm.session(actor=crm.system_actor) as s:
        (ticket,) = s.tickets.list()
    assert ticket_token(ticket.id) in sent["Subject"]
    assert sent["In-Reply-To"] == "<15090.61304.110929.45684@aaa.zzz.org>"


def test_the_command_reads_once_and_bad_credentials_are_one_error_line(
    imap: Server, tmp_path: Path
) -> None:
    imap.deliver(PERSON, BOUNCE)
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    env = {**os.environ, "IMAP_SECRET": imap.password}
    url = imap.url(password=False)
    once = subprocess.run(
        [sys.executable, "-m", "pycrm", "mail", "--imap", url, "--password-env", "IMAP_SECRET",
         "--once", "--db", db, "--category", "inbox"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert once.returncode == 0, once.stderr
    assert "1 opened, 0 replied, 0 duplicate, 1 ignored, 0 refused" in " ".join(once.stdout.split())
    env["IMAP_SECRET"] = "wrong"
    bad = subprocess.run(
        [sys.executable, "-m", "pycrm", "mail", "--imap", url, "--password-env", "IMAP_SECRET",
         "--once", "--db", db],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "Traceback" not in bad.stderr
    assert bad.stderr.startswith("error: IMAP ")
    assert "was refused" in bad.stderr


def test_the_command_polls_until_sigterm_and_then_prints_its_totals(
    imap: Server, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'crm.db'}"
    env = {**os.environ, "IMAP_SECRET": imap.password}
    worker = subprocess.Popen(
        [sys.executable, "-m", "pycrm", "mail", "--imap", imap.url(password=False),
         "--password-env", "IMAP_SECRET", "--poll", "0.2", "--to", "lead", "--db", db, "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        imap.deliver(PERSON)
        deadline = time.monotonic() + 30
        while imap.uids("UNSEEN") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert imap.uids("UNSEEN") == []
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, err
    assert '"captured": 1' in out
    assert "stopping after the batch in hand" in err
