"""The ops console in a real browser: Debian's chromium, driven through its chromedriver
by Selenium (nothing downloaded), against the real gunicorn, worker, beat and clamd.

Every page visited is screenshotted into test-output/ops-screenshots/, and the
browser's console must stay free of errors, CSP violations included.
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import requests
from sqlalchemy import select, text

from store.clients import create_client
from tests.documents import files
from tests.e2e.conftest import STRIPE_SECRET, fresh_stack_environment
from tests.e2e.harness import REPO, Stack, app_settings
from tests.e2e.webhook_load import payment_event
from tests.imports import archives
from tests.services import Clamd, require_postgres, unavailable, wait_for
from tests.webhooks import signing
from webapp import create_app
from webapp.extensions import db
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.e2e
SCREENSHOTS = Path(os.environ.get("SLUICE_TEST_OUTPUT", REPO / "test-output")) / "ops-screenshots"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        unavailable("chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


class Console:
    """The browser on the console, checking every page it shows."""

    def __init__(self, driver, stack: Stack, prefix: str):
        self.driver, self.stack, self.prefix = driver, stack, prefix
        self.shots: list[Path] = []

    def open(self, path: str) -> None:
        self.driver.get(self.stack.url(path))
        self.check()

    def check(self, name: str | None = None) -> None:
        title = self.driver.title.split(" · ")[0].lower().replace(" ", "-")
        shot = SCREENSHOTS / f"{self.prefix}{len(self.shots) + 1:02d}-{name or title}.png"
        self.driver.save_screenshot(str(shot))
        self.shots.append(shot)
        errors = [entry for entry in self.driver.get_log("browser")
                  if entry["level"] in ("SEVERE", "ERROR")
                  or "Content Security Policy" in entry["message"]]
        assert errors == [], errors

    def find(self, css: str):
        from selenium.webdriver.common.by import By
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def sign_in(self, token: str) -> None:
        self.open("/ops/")
        assert "/ops/sign-in" in self.driver.current_url  # signed out: sent to sign in
        self.find("#token").send_keys(token)
        self.click_button("Sign in")
        assert self.find("h1").text == "Is anything stuck?"

    def click_button(self, label: str) -> None:
        from selenium.webdriver.common.by import By
        self.driver.find_element(By.XPATH, f"//button[normalize-space()='{label}']").click()
        self.check()

    def wait_text(self, css: str, expected: str, timeout: float = 60) -> None:
        """Wait for the page, refreshing itself (ops.js), to show `expected`."""
        def shown():
            try:
                return expected in self.find(css).text
            except Exception:  # the page is reloading under us
                return False
        wait_for(shown, timeout=timeout, interval=0.5, what=f"{expected!r} in {css}")
        self.check()


@pytest.fixture(scope="module")
def console(tmp_path_factory, worker_index):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob(f"w{worker_index}-*.png"):
        old.unlink()
    workdir = tmp_path_factory.mktemp("ops_browser")
    clamd = Clamd(workdir / "clamd").start()
    env = fresh_stack_environment(workdir, worker_index, "ops_browser")
    env.update(CLAMD_URL=clamd.url, WORKER_CONCURRENCY="2")
    stack = Stack(workdir / "logs", env)
    stack.release()
    stack.start("web", "worker", "beat")
    app = create_app(app_settings(env))
    tokens = {}
    with app.app_context():
        uploader = ["documents:read", "documents:write", "imports:write"]
        for name, scopes in (("oncall", ["admin"]), ("uploader", uploader)):
            tokens[name] = create_client(db.session, name, scopes)[1]
        db.session.commit()
    driver = None
    try:
        stack.wait_ready()
        driver = browser(workdir / "chromium-profile")
        console = Console(driver, stack, prefix=f"w{worker_index}-")
        console.sign_in(tokens["oncall"])
        yield console, app, tokens
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()
        clamd.stop()
        app.extensions["sluice.db"].engine.dispose()


def test_a_dead_event_on_the_overview_is_opened_replayed_and_processed(console):
    require_postgres()  # SQLite cannot add a CHECK constraint to an existing table
    browser, app, _tokens = console
    browser.open("/ops/")

    # A payment the database refuses (a broken constraint) dies after its retries...
    with app.app_context():
        db.session.execute(text("ALTER TABLE payments ADD CONSTRAINT refuse_browser "
                                "CHECK (reference <> 'pi_browser') NOT VALID"))
        db.session.commit()
    body = payment_event("evt_browser_dead", "pi_browser")
    assert requests.post(browser.stack.url("/webhooks/stripe"), data=body, timeout=10,
                         headers=signing.stripe_headers(body, STRIPE_SECRET)).status_code == 202
    browser.wait_text(".flags", "dead event(s)", timeout=90)  # the overview refreshes itself

    # ...the operator follows the flag to it, fixes the cause, and replays it.
    from selenium.webdriver.common.by import By
    browser.driver.find_element(By.PARTIAL_LINK_TEXT, "dead event(s)").click()
    browser.check()
    with app.app_context():
        event_id = db.session.scalar(select(WebhookEvent.id).where(
            WebhookEvent.event_key == "evt_browser_dead"))
    browser.driver.find_element(By.LINK_TEXT, str(event_id)).click()
    browser.check()
    assert "dead" in browser.find("dd.status-dead").text
    with app.app_context():
        db.session.execute(text("ALTER TABLE payments DROP CONSTRAINT refuse_browser"))
        db.session.commit()
    browser.click_button("Replay")
    assert "queued for its handler again" in browser.find(".flash").text

    def processed() -> bool:
        browser.driver.refresh()
        return "processed" in browser.find("dl").text
    wait_for(processed, timeout=60, interval=1, what="the replayed event to be processed")
    browser.check("event-processed")
    assert "pi_browser" in browser.find("main").text  # the payment it changed is shown


def test_an_uploaded_documents_status_changes_on_its_page(console):
    browser, _app, tokens = console
    uploaded = requests.post(browser.stack.url("/v1/documents"), timeout=10,
                             headers={"Authorization": f"Bearer {tokens['uploader']}"},
                             files={"file": ("browser.pdf", files.pdf("seen in a browser"))})
    assert uploaded.status_code == 201
    browser.open("/ops/documents")
    assert "browser.pdf" in browser.find("table").text
    browser.open(f"/ops/documents/{uploaded.json()['id']}")
    browser.wait_text("#document-status", "clean")  # pending_scan, then the page refreshes


def test_an_imports_progress_bar_reaches_100_percent(console):
    browser, _app, tokens = console
    archive = archives.build([(f"page-{i}.txt", f"import row {i}\n".encode() * 20)
                              for i in range(400)])
    created = requests.post(browser.stack.url("/v1/imports"), timeout=30,
                            headers={"Authorization": f"Bearer {tokens['uploader']}"},
                            files={"archive": ("batch.zip", io.BytesIO(archive))})
    assert created.status_code == 202, created.text
    browser.open(f"/ops/imports/{created.json()['id']}")
    browser.wait_text("#import-percent", "100.0%", timeout=120)
    assert browser.find("#import-progress").get_attribute("value") == "100"
    browser.open("/ops/imports")


def test_run_now_adds_a_row_to_the_jobs_history(console):
    browser, _app, _tokens = console
    browser.open("/ops/jobs")
    browser.open("/ops/jobs/purge_retention")
    browser.click_button("Run now")
    browser.wait_text("#runs", "ops")  # the run, triggered from here, once the worker took it
    browser.wait_text("#runs", "succeeded")
    assert "skipped_locked" not in browser.find("#runs").text


def test_every_other_page_renders_without_console_errors(console):
    browser, _app, _tokens = console
    for path in ("/ops/events", "/ops/events/replay?status=dead", "/ops/media",
                 "/ops/sources", "/ops/"):
        browser.open(path)
    assert all(shot.stat().st_size > 1000 for shot in browser.shots)  # real pictures
