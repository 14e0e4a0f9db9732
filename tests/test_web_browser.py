"""pycrm.web through a real HTTP server (uvicorn) and a real browser (headless Chromium).

A shop page on one origin (``http://localhost:<port>/shop/…``) embeds the
snippet of a form served on another (``http://127.0.0.1:<port>/crm/…``), as a
shop embeds a CRM's form. The tests skip when Chromium or chromedriver is
missing, unless ``PYCRM_REQUIRE_BROWSER=1`` (set by CI), in which case they fail.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import pycrm
from pycrm.domain.consent import Consent
from pycrm.domain.leads import Lead, LeadStatus
from pycrm.domain.query import Eq
from pycrm.web import FakeMailer, FormApp, LeadForm, SlidingWindowLimiter
from support import staff

CHROMIUM = os.environ.get("PYCRM_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("PYCRM_CHROMEDRIVER", "/usr/bin/chromedriver")
REQUIRED = os.environ.get("PYCRM_REQUIRE_BROWSER") == "1"


def _missing() -> str | None:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    for module in ("selenium", "uvicorn"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture(scope="module", autouse=True)
def _browser_available() -> None:
    reason = _missing()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"PYCRM_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(f"no browser: {reason}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><h1>{title}</h1>
{snippet}
</body></html>
"""


class Shop:
    """The shop's pages and the mounted form app, as one ASGI application."""

    def __init__(self, forms: FormApp) -> None:
        self.forms = forms
        self.pages: dict[str, str] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/crm/"):
            # As Starlette's Mount does: the root path set, the path kept whole.
            await self.forms({**scope, "root_path": "/crm"}, receive, send)
            return
        if scope["type"] == "lifespan":
            await self.forms(scope, receive, send)
            return
        page = self.pages.get(scope["path"])
        body = (page or "not found").encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200 if page else 404,
                "headers": [(b"content-type", b"text/html; charset=utf-8")],
            }
        )
        await send({"type": "http.response.body", "body": body})


class Server:
    def __init__(self, crm: pycrm.CRM, web: str, port: int) -> None:
        import uvicorn

        self.crm = crm
        self.port = port
        self.shop_origin = f"http://localhost:{port}"
        self.crm_origin = f"http://127.0.0.1:{port}"
        self.mailer = FakeMailer()
        self.seen: set[str] = set()
        self.sam = ""
        common: dict[str, Any] = {
            "actor": web,
            "allowed_origins": [self.shop_origin],
            "consent": {"marketing": "newsletter"},
        }
        self.app = FormApp(
            crm,
            [
                LeadForm(
                    name="contact-us",
                    mapping={
                        "full_name": "name",
                        "mail": "email",
                        "firm": "company",
                        "message": "needs",
                    },
                    required=["full_name", "mail"],
                    success_url=f"{self.shop_origin}/shop/thanks.html",
                    **common,
                ),
                LeadForm(
                    name="newsletter",
                    mapping={"full_name": "name", "mail": "email"},
                    required=["mail", "newsletter"],
                    double_opt_in=True,
                    pending_url=f"{self.shop_origin}/shop/check-your-mail.html",
                    confirmed_url=f"{self.shop_origin}/shop/welcome.html",
                    confirm_within=timedelta(days=2),
                    **common,
                ),
            ],
            mailer=self.mailer,
            secret="browser-test-secret-0123456789abcdef",
        )
        self.shop = Shop(self.app)
        config = uvicorn.Config(
            self.shop, host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        for name, title in (("contact-us", "Contact us"), ("newsletter", "Our newsletter")):
            # The shop embeds the snippet the CRM serves, as a page builder would.
            url = f"{self.crm_origin}/crm/forms/{name}.html"
            with urllib.request.urlopen(url, timeout=10) as reply:
                snippet = reply.read().decode()
            self.shop.pages[f"/shop/{name}.html"] = PAGE.format(title=title, snippet=snippet)
        for name in ("thanks", "check-your-mail", "welcome"):
            self.shop.pages[f"/shop/{name}.html"] = PAGE.format(title=name, snippet="")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def leads(self) -> list[Lead]:
        """The leads captured since the test began."""
        with self.crm.session(actor=self.crm.system_actor) as s:
            return [lead for lead in s.leads.iter() if lead.id not in self.seen]

    def consents(self, lead_id: str) -> list[Consent]:
        with self.crm.session(actor=self.crm.system_actor) as s:
            return s.read(Consent).find(Eq("subject_id", lead_id))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("browser") / "crm.db"
    crm = pycrm.connect(
        f"sqlite:///{path}",
        default_region="DE",
        routing_rules=[{"name": "everyone", "pick": "first"}],
    )
    people = staff(crm, web="marketing", sam="sales")
    running = Server(crm, people.web.id, _free_port())
    running.sam = people.sam.id
    running.start()
    yield running
    running.stop()
    crm.close()


@pytest.fixture
def fresh(server: Server) -> Server:
    """The server, counting leads from now on, with a fresh rate limit."""
    server.seen = set()
    server.seen = {lead.id for lead in server.leads()}
    server.mailer.sent.clear()
    server.app.rate_limiter = SlidingWindowLimiter(10, 600)
    return server


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def _wait_for(browser: Any, url: str) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda d: d.current_url == url)


def _fill(browser: Any, form: str, fields: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    for name, value in fields.items():
        browser.find_element(By.CSS_SELECTOR, f"#pycrm-form-{form} [name='{name}']").send_keys(
            value
        )


def _click(browser: Any, selector: str) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, selector).click()


def test_a_visitor_submits_the_embedded_form_and_the_lead_is_routed(
    fresh: Server, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{fresh.shop_origin}/shop/contact-us.html")
    trap = browser.find_element(By.NAME, "website")
    assert not trap.is_displayed() or trap.location["x"] < 0  # off-screen for people
    _fill(
        browser,
        "contact-us",
        {
            "full_name": "山田 太郎",
            "mail": "taro@yamada.example",
            "firm": "山田機械有限公司",
            "message": "Pumps & valves <40 units>",
        },
    )
    _click(browser, "#pycrm-contact-us-newsletter")
    _click(browser, "#pycrm-form-contact-us button[type=submit]")

    _wait_for(browser, f"{fresh.shop_origin}/shop/thanks.html")
    [lead] = fresh.leads()
    assert (lead.name, lead.primary_email, lead.company, lead.needs) == (
        "山田 太郎",
        "taro@yamada.example",
        "山田機械有限公司",
        "Pumps & valves <40 units>",
    )
    assert (lead.source, lead.status, lead.owner_id) == (
        "webform",
        LeadStatus.ASSIGNED,
        fresh.sam,
    )
    [consent] = fresh.consents(lead.id)
    assert (consent.purpose, consent.method) == ("marketing", "form")
    assert consent.proof is not None
    assert consent.proof["page"].startswith(fresh.shop_origin)
    assert consent.proof["ip"] == "127.0.0.1"


def test_the_browser_refuses_to_skip_required_fields(fresh: Server, browser: Any) -> None:
    browser.get(f"{fresh.shop_origin}/shop/contact-us.html")
    _fill(browser, "contact-us", {"firm": "No Name Ltd"})

    _click(browser, "#pycrm-form-contact-us button[type=submit]")

    time.sleep(0.3)
    assert browser.current_url == f"{fresh.shop_origin}/shop/contact-us.html"
    assert fresh.leads() == []


FETCH = """
const [action, fields, done] = arguments;
fetch(action, {
  method: "POST",
  headers: {"Content-Type": "application/json", "Accept": "application/json"},
  body: JSON.stringify(fields),
}).then(async r => done({status: r.status, retry: r.headers.get("Retry-After"), body: await r.text()}))
  .catch(e => done({error: String(e)}));
"""


def _fetch(browser: Any, action: str, fields: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = browser.execute_async_script(FETCH, action, fields)
    assert "error" not in result, result
    return result


def test_spam_from_the_page_is_refused_and_nothing_stored(fresh: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    browser.set_script_timeout(15)
    browser.get(f"{fresh.shop_origin}/shop/contact-us.html")
    action = browser.find_element(By.ID, "pycrm-form-contact-us").get_attribute("action")
    assert action == f"{fresh.crm_origin}/crm/forms/contact-us"
    person = {"full_name": "Bot", "mail": "bot@spam.example"}
    fresh.app.rate_limiter = SlidingWindowLimiter(3, 600)

    # A script fills the honeypot (a cross-origin JSON post: the browser asks first).
    filled = _fetch(browser, action, {**person, "website": "http://spam.example"})
    # A bot posting the hidden field through the form itself.
    browser.execute_script(
        "const f = document.getElementById('pycrm-form-contact-us');"
        "f.querySelector('[name=website]').value = 'http://spam.example';"
        "f.querySelector('[name=full_name]').value = 'Bot';"
        "f.querySelector('[name=mail]').value = 'bot@spam.example';"
        "f.submit();"
    )
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(lambda d: d.current_url == action)
    assert "refused" in browser.page_source
    browser.get(f"{fresh.shop_origin}/shop/contact-us.html")
    # The same address keeps posting: the third submission is its last in the window.
    third = _fetch(browser, action, {**person, "mail": "b@spam.example", "full_name": "Bot B"})
    fourth = _fetch(browser, action, {**person, "mail": "c@spam.example", "full_name": "Bot C"})

    assert (filled["status"], json.loads(filled["body"])["error"]) == (400, "refused")
    assert third["status"] == 201
    assert fourth["status"] == 429
    assert int(fourth["retry"]) > 0  # readable by the page: exposed through CORS
    assert [lead.name for lead in fresh.leads()] == ["Bot B"]


def test_double_opt_in_in_the_browser_with_a_fake_mail_port(fresh: Server, browser: Any) -> None:
    browser.get(f"{fresh.shop_origin}/shop/newsletter.html")
    _fill(browser, "newsletter", {"full_name": "Ana Lima", "mail": "ana@lima.example"})
    _click(browser, "#pycrm-newsletter-newsletter")
    _click(browser, "#pycrm-form-newsletter button[type=submit]")

    _wait_for(browser, f"{fresh.shop_origin}/shop/check-your-mail.html")
    assert fresh.leads() == []  # nothing is kept until the visitor confirms
    [mail] = fresh.mailer.sent
    assert mail.to == "ana@lima.example"
    link = next(word for word in mail.text.split() if "/confirm/" in word)
    assert link.startswith(f"{fresh.crm_origin}/crm/confirm/")

    for _ in range(2):  # confirming twice keeps one lead
        browser.get(link)
        assert fresh.leads() == [] or len(fresh.leads()) == 1
        _click(browser, "button[type=submit]")
        _wait_for(browser, f"{fresh.shop_origin}/shop/welcome.html")

    [lead] = fresh.leads()
    assert (lead.name, lead.primary_email, lead.owner_id) == (
        "Ana Lima",
        "ana@lima.example",
        fresh.sam,
    )
    [consent] = fresh.consents(lead.id)
    assert (consent.purpose, consent.method) == ("marketing", "double_opt_in")
    assert consent.proof is not None
    assert "confirmed_at" in consent.proof

    tampered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
    browser.get(tampered)
    assert "not valid" in browser.page_source
    assert len(fresh.leads()) == 1
