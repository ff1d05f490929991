"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium, against a real gunicorn serving tests/ui_app.py on 127.0.0.1.

Credentials go in an ``Authorization`` header set through the Chrome DevTools protocol
(``Network.setExtraHTTPHeaders``): a page loaded from ``http://user:pw@host/`` cannot call
``fetch()`` (its URLs would carry the credentials). Nothing is downloaded: the driver is
``/usr/bin/chromedriver``, passed to Selenium so that Selenium Manager never runs. Each test
saves a screenshot under tests/screenshots/.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from pathlib import Path

import pytest
import requests

from .conftest import gunicorn

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
    reason="chromium and chromium-driver are not installed "
           "(apt-get install -y chromium chromium-driver; .ci/run does it)")

SHOTS = Path(__file__).parent / "screenshots"


def header(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("ui") / "jobs.sqlite"
    # Each page that follows the events holds a thread while it is open, and for up to a
    # keepalive (15 s) after the browser left it: 30 pages in 15 s needed more than 8.
    with gunicorn("tests.ui_app:app", "--worker-class", "gthread", "--threads", "32",
                  env={"UI_TEST_STORE": str(store)}) as (host, port):
        base = f"http://{host}:{port}/scheduler"
        session = requests.Session()
        session.headers["Authorization"] = header("admin")
        for job in ({"id": "report", "func": "tests.tasks:record", "trigger": "interval",
                     "hours": 1},
                    {"id": "failing", "func": "tests.tasks:fail",
                     "kwargs": {"message": "disk <full>"}, "trigger": "cron", "hour": "3"},
                    {"id": "backup-7", "name": "Weekly archive", "func": "tests.tasks:record",
                     "trigger": "interval", "days": 3}):
            answer = session.post(f"{base}/jobs", json=job, timeout=10)
            assert answer.status_code == 200, answer.text
        yield base, session


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1280,800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    SHOTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()


def log_in(driver, user: str) -> None:
    """What the browser does once the user typed the Basic credentials: send them."""
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders",
                           {"headers": {"Authorization": header(user)}})


def wait(driver, condition, seconds: float = 10):
    """Until ``condition`` holds; a live page swaps its elements, so a stale one is retried."""
    return WebDriverWait(driver, seconds, ignored_exceptions=(
        StaleElementReferenceException,)).until(condition)


def click_button(driver, text: str) -> None:
    """Click the button labelled ``text``, found again if the live page swapped it first."""
    def clicked(d) -> bool:
        d.find_element(By.XPATH, f"//button[text()='{text}']").click()
        return True
    wait(driver, clicked)


def shot(driver, name: str) -> None:
    driver.save_screenshot(str(SHOTS / f"{name}.png"))


def test_without_credentials_the_browser_is_asked_for_them(server, browser):
    base, _ = server
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})
    answer = requests.get(f"{base}/ui", timeout=10)
    assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
    log_in(browser, "admin")
    browser.get(f"{base}/ui/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Scheduler"
    assert browser.find_element(By.CSS_SELECTOR, ".state").text == "running"
    shot(browser, "scheduler")


def test_see_a_job_in_the_list(server, browser):
    base, _ = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs")
    link = browser.find_element(By.LINK_TEXT, "report")
    row = link.find_element(By.XPATH, "./ancestor::tr")
    assert "every 1 hours" in row.text and "never ran" in row.text
    shot(browser, "jobs")
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{base}/ui/jobs")
        assert browser.find_element(By.LINK_TEXT, "report").is_displayed()
        shot(browser, "jobs-phone")
    finally:
        browser.set_window_size(1280, 800)


def test_search_finds_a_job_by_its_name(server, browser):
    base, _ = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=q]").text == "Search by id or name"
    browser.find_element(By.ID, "q").send_keys("ARCHIVE", Keys.ENTER)  # keyboard: Enter
    wait(browser, EC.text_to_be_present_in_element((By.CSS_SELECTOR, ".count"), "1 job;"))
    rows = browser.find_elements(By.CSS_SELECTOR, "table.jobs tbody tr")
    assert [row.find_element(By.TAG_NAME, "a").text for row in rows] == ["backup-7"]
    assert "Weekly archive" in rows[0].text and "every 3 days" in rows[0].text
    assert browser.find_element(By.ID, "q").get_attribute("value") == "ARCHIVE"
    shot(browser, "search-by-name")


def fill(driver, values: dict[str, str]) -> None:
    """Type into the form's fields; a trigger's fields are keyed ``{type}-{field}``."""
    for key, value in values.items():
        field = driver.find_element(By.ID, f"f-{key}")
        field.clear()
        field.send_keys(value)


def choose(driver, kind: str) -> None:
    Select(driver.find_element(By.ID, "f-trigger")).select_by_value(kind)


def submit(driver) -> None:
    driver.find_element(By.CSS_SELECTOR, "#job-form button[type=submit]").click()


def reached_job_page(driver, job_id: str) -> None:
    """Wait for the job's page the form goes to once saved (its URL first: the form's
    elements vanish meanwhile)."""
    wait(driver, lambda d: d.current_url.endswith(f"/ui/jobs/{job_id}"))
    assert driver.find_element(By.TAG_NAME, "h1").text == f"Job {job_id}"


def test_add_a_job_through_the_form(server, browser):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/new")
    assert browser.find_element(By.CSS_SELECTOR, "label[for=f-func]").text.startswith("Func")
    fill(browser, {"id": "nightly", "name": "Nightly report", "func": "tests.tasks:record",
                   "interval-minutes": "30"})
    submit(browser)
    reached_job_page(browser, "nightly")
    assert "every 30 minutes" in browser.find_element(By.CSS_SELECTOR, "table.fields").text
    assert session.get(f"{base}/jobs/nightly", timeout=10).json()["minutes"] == 30
    shot(browser, "job-added")


def holds(actual, expected) -> bool:
    """Whether ``actual`` (JSON) has every field of ``expected``, in lists item by item."""
    if isinstance(expected, dict):
        return all(holds(actual.get(key), value) for key, value in expected.items())
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(holds, actual, expected))
    return type(actual) is type(expected) and actual == expected


@pytest.mark.parametrize(("kind", "values", "words", "stored"), [
    pytest.param("calendarinterval", {"calendarinterval-months": "1", "calendarinterval-hour": "6",
                                      "calendarinterval-minute": "30"},
                 "every 1 months at 06:30:00", {"months": 1, "hour": 6, "minute": 30},
                 id="calendarinterval"),
    pytest.param("or", {"or-triggers": '[{"trigger": "cron", "hour": "9"}, '
                                       '{"trigger": "interval", "hours": 6}]'},
                 "any of (cron hour=9; every 6 hours)",
                 {"triggers": [{"trigger": "cron", "hour": "9"},
                               {"trigger": "interval", "hours": 6}]},
                 id="or of a cron and an interval"),
    pytest.param("interval", {"interval-hours": "6", "interval-jitter": "30",
                              "interval-start_date": "2030-01-31T09:00:00+01:00"},
                 "every 6 hours",
                 {"hours": 6, "jitter": 30, "start_date": "2030-01-31T09:00:00+01:00"},
                 id="interval with jitter and a start date"),
    pytest.param("cron", {"cron-hour": "9", "cron-jitter": "120",
                          "cron-start_date": "2030-01-31", "cron-end_date": "2030-12-31"},
                 "cron hour=9",  # dates alone are midnight in the trigger's zone
                 {"hour": "9", "jitter": 120, "start_date": "2030-01-31T00:00:00+00:00",
                  "end_date": "2030-12-31T00:00:00+00:00"},
                 id="cron with jitter, start and end dates"),
])
def test_add_a_job_with_its_trigger_fields_through_the_form(server, browser, kind, values,
                                                            words, stored):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/new")
    job_id = f"added-{kind}"
    choose(browser, kind)
    fill(browser, {"id": job_id, "func": "tests.tasks:record", **values})
    submit(browser)
    reached_job_page(browser, job_id)
    assert words in browser.find_element(By.CSS_SELECTOR, "table.fields").text
    job = session.get(f"{base}/jobs/{job_id}", timeout=10).json()
    assert job["trigger"] == kind and holds(job, stored), job  # numbers sent as numbers
    shot(browser, f"job-added-{kind}")


@pytest.mark.parametrize(("kind", "values", "key", "message"), [
    pytest.param("cron", {"cron-hour": "25"}, "cron-hour",
                 "hour: Error validating expression '25'", id="a cron field at that field"),
    pytest.param("calendarinterval", {"calendarinterval-weeks": "1.5"}, "calendarinterval-weeks",
                 "weeks: must be an integer >= 0",
                 id="calendarinterval weeks at its own weeks, not the interval's"),
    pytest.param("calendarinterval", {}, "calendarinterval",
                 "calendarinterval: interval must be at least 1 day long",
                 id="the calendarinterval as a whole at its fieldset"),
    pytest.param("and", {"and-triggers": '[{"trigger": "cron", "hour": "25"}]'}, "and-triggers",
                 "hour: Error validating expression '25'", id="a child's field at the children"),
    pytest.param("or", {"or-triggers": '[{"trigger": "cron",'}, "or-triggers",
                 "triggers: is not valid JSON", id="children that are not JSON at the children"),
    pytest.param("or", {"or-triggers": '[{"trigger": "cron", "hour": "9", "jitter": -1}]'},
                 "or-triggers", "jitter: must be an integer",
                 id="a child's jitter at the children when the or's own is empty"),
    pytest.param("or", {"or-triggers": '[{"trigger": "cron", "hour": "9"}]', "or-jitter": "1.5"},
                 "or-jitter", "jitter: must be an integer", id="the or's own jitter at it"),
    pytest.param("interval", {"interval-seconds": "30", "interval-start_date": "31.01.2030"},
                 "interval-start_date", "start_date: '31.01.2030' is not an ISO 8601 date-time",
                 id="an interval's start date at its own field"),
])
def test_the_apis_validation_message_is_shown_at_its_field(server, browser, kind, values, key,
                                                           message):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/new")
    browser.find_element(By.ID, "f-trigger").send_keys(kind)  # keyboard: choose by typing
    fill(browser, {"id": "bad", "func": "tests.tasks:record", **values})
    browser.find_element(By.ID, "f-func").send_keys(Keys.ENTER)  # submit from the keyboard
    error = wait(browser, lambda d: d.find_element(By.ID, f"err-{key}").text or None)
    assert error.startswith(message)
    others = [slot.get_attribute("id") for slot in
              browser.find_elements(By.CSS_SELECTOR, ".field-error, #form-error")
              if slot.get_attribute("id") != f"err-{key}" and slot.text]
    assert others == []  # shown once, in the visible fieldset (interval has weeks too)
    if browser.find_elements(By.ID, f"f-{key}"):
        assert browser.find_element(By.ID, f"f-{key}").get_attribute("aria-invalid") == "true"
        assert browser.switch_to.active_element.get_attribute("id") == f"f-{key}"
    assert browser.execute_script(  # on screen, where the user looks
        "const box = arguments[0].getBoundingClientRect();"
        "return box.top >= 0 && box.bottom <= window.innerHeight;",
        browser.find_element(By.ID, f"err-{key}"))
    assert session.get(f"{base}/jobs/bad", timeout=10).status_code == 404
    shot(browser, "validation" if kind == "cron" else f"validation-{key}")


#: Jobs as the API takes them, for the edit form: one of each trigger type, then jitter and
#: start and end dates (saving the form once dropped them).
EDITED = [
    pytest.param("edit-interval", {"trigger": "interval", "hours": 2, "minutes": 30,
                                   "timezone": "Europe/Berlin"}, id="interval"),
    pytest.param("edit-cron", {"trigger": "cron", "day_of_week": "mon-fri", "hour": "9",
                               "minute": "15"}, id="cron"),
    pytest.param("edit-date", {"trigger": "date", "run_date": "2031-01-01T09:00:00+00:00"},
                 id="date"),
    pytest.param("edit-calendarinterval", {"trigger": "calendarinterval", "months": 1,
                                           "days": 2, "hour": 6, "minute": 30,
                                           "start_date": "2030-01-31"}, id="calendarinterval"),
    pytest.param("edit-and", {"trigger": "and", "triggers": [
        {"trigger": "cron", "day_of_week": "mon-fri", "hour": "9"},
        {"trigger": "cron", "day": "1-7", "hour": "9"}]}, id="and"),
    pytest.param("edit-or", {"trigger": "or", "triggers": [
        {"trigger": "cron", "hour": "9"},
        {"trigger": "calendarinterval", "weeks": 2, "hour": 18}]}, id="or"),
    pytest.param("edit-interval-dates", {
        "trigger": "interval", "hours": 2, "start_date": "2026-01-31T09:00:00.250000+01:00",
        "end_date": "2036-01-31T09:00:00+01:00", "timezone": "Europe/Berlin", "jitter": 30,
    }, id="interval with jitter, a start date in the past and an end date"),
    pytest.param("edit-cron-dates", {
        "trigger": "cron", "hour": "9", "minute": "15", "start_date": "2030-01-31",
        "end_date": "2030-12-31T18:00:00Z", "jitter": 600,
    }, id="cron with jitter, start and end dates"),
    pytest.param("edit-calendarinterval-jitter", {
        "trigger": "calendarinterval", "weeks": 2, "hour": 18, "start_date": "2030-01-31",
        "end_date": "2031-01-31", "jitter": 300,
    }, id="calendarinterval with jitter and an end date"),
    pytest.param("edit-or-jitter", {"trigger": "or", "jitter": 60, "triggers": [
        {"trigger": "cron", "hour": "9", "jitter": 5},
        {"trigger": "interval", "hours": 6, "start_date": "2030-01-31T09:00:00+00:00"}]},
        id="or with jitter"),
]


@pytest.mark.parametrize(("job_id", "trigger"), EDITED)
def test_editing_a_job_prefills_its_trigger_and_saves_it_unchanged(server, browser, job_id,
                                                                   trigger):
    base, session = server
    kind = trigger["trigger"]
    answer = session.post(f"{base}/jobs", json={"id": job_id, "func": "tests.tasks:record",
                                                **trigger}, timeout=10)
    assert answer.status_code == 200, answer.text
    before = answer.json()
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs/{job_id}/edit")
    choice = Select(browser.find_element(By.ID, "f-trigger")).first_selected_option
    assert choice.get_attribute("value") == kind
    shown = [fieldset for fieldset in browser.find_elements(By.CSS_SELECTOR, "fieldset.trigger")
             if fieldset.is_displayed()]
    assert [fieldset.get_attribute("data-trigger") for fieldset in shown] == [kind]
    for control in shown[0].find_elements(By.CSS_SELECTOR, "[data-send]"):
        name, value = control.get_attribute("name"), control.get_attribute("value")
        expected = before.get(name)
        if control.get_attribute("data-send") == "json":
            assert json.loads(value) == expected, name
        else:
            assert value == ("" if expected is None else str(expected)), name
    browser.execute_script("arguments[0].scrollIntoView()", shown[0])
    shot(browser, job_id)
    submit(browser)
    reached_job_page(browser, job_id)
    after = session.get(f"{base}/jobs/{job_id}", timeout=10).json()
    # Every field kept, an interval's start too; a jitter draws the next run time again.
    moving = {"next_run_time", "last_run"}
    assert {k: v for k, v in after.items() if k not in moving} == {
        k: v for k, v in before.items() if k not in moving}


def test_pause_then_run_and_see_the_run_and_its_traceback_live(server, browser):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs/failing")
    wait(browser, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-live")
         == "open")
    click_button(browser, "Pause")
    wait(browser, lambda d: d.find_elements(By.XPATH, "//button[text()='Resume']"))
    assert session.get(f"{base}/jobs/failing", timeout=10).json()["next_run_time"] is None
    # A run started elsewhere (another client of the API) appears without a reload.
    marker = browser.find_element(By.TAG_NAME, "h1")
    assert session.post(f"{base}/jobs/failing/run", timeout=10).status_code == 200
    row = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-run] .outcome.error"))
    assert row and marker.is_displayed()  # the same document: no reload happened
    summary = browser.find_element(By.CSS_SELECTOR, "tr[data-run] details summary")
    assert "disk <full>" in summary.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", summary)
    summary.send_keys(Keys.ENTER)  # keyboard: a <summary> opens with Enter
    traceback = browser.find_element(By.CSS_SELECTOR, "tr[data-run] details pre")
    assert traceback.is_displayed() and "Traceback" in traceback.text
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", traceback)
    shot(browser, "traceback")


def test_run_now_from_the_page(server, browser):
    base, _ = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs/report")
    click_button(browser, "Run now")
    wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "tr[data-run] .outcome.success"))
    shot(browser, "run-success")


def test_delete_asks_first(server, browser):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/jobs/nightly")
    click_button(browser, "Delete")
    alert = wait(browser, EC.alert_is_present())
    assert alert.text == "Delete job nightly?"
    alert.dismiss()
    time.sleep(0.3)
    assert session.get(f"{base}/jobs/nightly", timeout=10).status_code == 200
    click_button(browser, "Delete")
    wait(browser, EC.alert_is_present()).accept()
    wait(browser, lambda d: d.current_url.endswith("/ui/jobs"))
    assert session.get(f"{base}/jobs/nightly", timeout=10).status_code == 404


def test_a_reader_sees_no_write_controls(server, browser):
    base, _ = server
    log_in(browser, "reader")
    try:
        for path in ("/ui/", "/ui/jobs", "/ui/jobs/failing"):
            browser.get(base + path)
            assert browser.find_elements(By.CSS_SELECTOR, "h1")
            assert not browser.find_elements(By.CSS_SELECTOR, "button.action, a.button")
            assert not browser.find_elements(By.LINK_TEXT, "Add a job")
        assert browser.find_elements(By.CSS_SELECTOR, "tr[data-run]")  # reads what there is
        shot(browser, "reader")
    finally:
        log_in(browser, "admin")


def test_shut_down_asks_first_and_start_brings_the_scheduler_back(server, browser):
    base, session = server
    log_in(browser, "admin")
    browser.get(f"{base}/ui/")

    def shown(state: str):
        return lambda d: d.find_element(By.CSS_SELECTOR, ".state").text == state

    def api_state() -> tuple[bool, str]:
        info = session.get(f"{base}/", timeout=10).json()
        return info["running"], info["state"]

    assert shown("running")(browser) and api_state() == (True, "running")
    click_button(browser, "Shut down")
    alert = wait(browser, EC.alert_is_present())
    assert alert.text == "Shut the scheduler down?"
    alert.dismiss()
    time.sleep(0.3)
    assert shown("running")(browser) and api_state() == (True, "running")
    click_button(browser, "Shut down")
    wait(browser, EC.alert_is_present()).accept()
    wait(browser, shown("stopped"))
    assert api_state() == (False, "stopped")
    assert browser.find_element(By.ID, "flash").text == "Shut down: done"
    shot(browser, "scheduler-stopped")
    click_button(browser, "Start")  # asks nothing
    wait(browser, shown("running"))
    assert api_state() == (True, "running")
    assert browser.find_element(By.ID, "flash").text == "Start: done"
    shot(browser, "scheduler-started")
