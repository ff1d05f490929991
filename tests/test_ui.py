"""The dashboard in process (scheduler_api/ui.py): headers, escaping, roles, the setting.

The browser tests are in tests/test_ui_browser.py.
"""

from __future__ import annotations

import base64
import datetime
import time
from html.parser import HTMLParser

import pytest
from werkzeug.test import Client

from authmw import AuthMiddleware, HTTPBasicAuth, Rule, compare_secrets
from scheduler_api import APScheduler
from scheduler_api.jobs import TRIGGER_FIELDS
from scheduler_api.ui import CSP, trigger_words

from .api_helpers import AUTH, plain_app, running_api

HOSTILE = '<img src=x onerror="alert(1)">&\''  # an id may hold anything but '/'
HOSTILE_MESSAGE = '</td><script>alert("x")</script>'


def wait_for(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_pages_carry_a_strict_policy_and_nosniff(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        for path in ("/ui", "/ui/jobs", "/ui/new", "/ui/static/ui.js", "/ui/static/ui.css"):
            answer = client.get(path)
            assert answer.status_code == 200, path
            assert answer.headers["Content-Security-Policy"] == CSP
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
        assert "unsafe-inline" not in CSP
        page = client.get("/ui/jobs").text
        assert "<script>" not in page and "style=" not in page and "<style" not in page
        assert 'src="/scheduler/ui/static/ui.js"' in page


def test_a_hostile_job_id_and_error_are_escaped(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        answer = client.post("/jobs", json={"id": HOSTILE, "func": "tests.tasks:fail",
                                            "kwargs": {"message": HOSTILE_MESSAGE},
                                            "trigger": "interval", "hours": 1})
        assert answer.status_code == 200, answer.text
        scheduler.run_job(HOSTILE)
        wait_for(lambda: scheduler.get_runs(HOSTILE, "error").total == 1)
        listing = client.get("/ui/jobs").text
        job_page = client.get("/ui/jobs/" + HOSTILE).text
        for page in (listing, job_page):
            assert "<img" not in page
            assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#x27;" in page
        assert "<script>alert" not in job_page and "</td><script>" not in job_page
        assert "&lt;/td&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in job_page
        assert "<details" in job_page and "Traceback" in job_page


def test_no_credentials_is_a_401(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        assert client.get("/ui", auth=False).status_code == 401
        assert client.get("/ui/static/ui.js", auth=False).status_code == 401


def test_off_is_a_404(tmp_path):
    with running_api(tmp_path / "jobs.sqlite", SCHEDULER_UI_ENABLED=False) as (_, client):
        assert client.get("/ui").status_code == 404
        assert client.get("/jobs").status_code == 200


def test_the_setting_is_checked(tmp_path):
    with pytest.raises(TypeError, match="SCHEDULER_UI_ENABLED"):
        APScheduler().init_app(plain_app, config={"SCHEDULER_UI_ENABLED": "yes"})


def test_an_unknown_job_is_a_404_page(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        answer = client.get("/ui/jobs/nope")
        assert answer.status_code == 404 and answer.mimetype == "text/html"


def test_the_list_pages_and_searches_by_id_and_name(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        for number in range(60):
            client.post("/jobs", json={"id": f"job-{number:02}", "func": "tests.tasks:record",
                                       "name": "Weekly archive" if number == 7 else "record",
                                       "trigger": "interval", "hours": 1})
        first = client.get("/ui/jobs").text
        assert "60 jobs; page 1 of 2" in first and first.count('<tr><td><a') == 50
        second = client.get("/ui/jobs?page=2").text
        assert second.count('<tr><td><a') == 10
        found = client.get("/ui/jobs?q=JOB-5").text
        assert "10 jobs" in found and "job-59" in found and "job-49" not in found
        assert "every 1 hours" in found
        by_name = client.get("/ui/jobs?q=ARCHIVE").text
        assert "1 job;" in by_name and ">job-07</a>" in by_name and "Weekly archive" in by_name
        searched_page = client.get("/ui/jobs?q=record&page=2").text  # 59 names hold it
        assert "59 jobs; page 2 of 2" in searched_page
        assert searched_page.count('<tr><td><a') == 9 and ">job-07</a>" not in searched_page
        assert 'rel="prev" href="/scheduler/ui/jobs?page=1&amp;q=record"' in searched_page


USERS = {"admin": {"roles": ["reader", "admin"]}, "reader": {"roles": ["reader"]},
         "monitor": {"roles": ["monitor"]}, "operator": {"roles": ["reader", "operator"]}}
READER_RULES = [Rule("/scheduler", roles={"GET": {"reader", "admin"}, "*": "admin"})]


def make_role_app(tmp_path, rules=READER_RULES):
    def check(auth):
        user = USERS.get(auth["username"])
        return user if user is not None and compare_secrets(auth["password"], "pw") else False

    scheduler = APScheduler()
    app = scheduler.init_app(plain_app, config={
        "SCHEDULER_API_ENABLED": True, "SCHEDULER_AUTH": HTTPBasicAuth(),
        "SCHEDULER_JOBSTORE_URL": f"sqlite:///{tmp_path / 'jobs.sqlite'}",
        "SCHEDULER_API_ALLOWED_FUNCS": ["tests.tasks:*"], "SCHEDULER_TIMEZONE": "UTC",
        "SCHEDULER_AUTH_OPTIONS": {"rules": rules},
    })
    scheduler.authenticate(check)
    assert isinstance(scheduler.middleware, AuthMiddleware)
    return scheduler, app


def as_user(name):
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:pw".encode()).decode()}


def test_a_reader_sees_no_write_controls(tmp_path):
    scheduler, app = make_role_app(tmp_path)
    scheduler.start()
    try:
        client = Client(app)
        assert client.post("/scheduler/jobs", headers=as_user("admin"), json={
            "id": "j", "func": "tests.tasks:record", "trigger": "interval", "hours": 1,
        }).status_code == 200
        for user, shown in (("admin", True), ("reader", False)):
            for path in ("/scheduler/ui/", "/scheduler/ui/jobs", "/scheduler/ui/jobs/j"):
                page = client.get(path, headers=as_user(user)).text
                assert ("data-method=" in page) is (path != "/scheduler/ui/jobs" and shown), \
                    (user, path)
                assert ("Add a job" in page) is shown
            assert client.get("/scheduler/ui/new", headers=as_user(user)).status_code == (
                200 if shown else 403)
    finally:
        scheduler.shutdown(wait=False)


@pytest.mark.parametrize(("job", "words"), [
    ({"trigger": "interval", "hours": 1, "minutes": 30}, "every 1 hours 30 minutes"),
    ({"trigger": "cron", "hour": "3", "minute": "*/5"}, "cron hour=3 minute=*/5"),
    ({"trigger": "date", "run_date": "2030-01-01T00:00:00+00:00"},
     "once at 2030-01-01T00:00:00+00:00"),
    ({"trigger": "or", "triggers": [{"trigger": "interval", "days": 1},
                                    {"trigger": "cron", "hour": "1"}]},
     "any of (every 1 days; cron hour=1)"),
    ({"trigger": "calendarinterval", "months": 1, "hour": 6, "minute": 30, "second": 0},
     "every 1 months at 06:30:00"),
    ({"trigger": "and", "triggers": [{"trigger": "cron", "day_of_week": "mon-fri"},
                                     {"trigger": "calendarinterval", "weeks": 2, "hour": 9}]},
     "all of (cron day_of_week=mon-fri; every 2 weeks at 09:00:00)"),
], ids=["interval", "cron", "date", "or", "calendarinterval at its time of day", "and"])
def test_triggers_in_words(job, words):
    assert trigger_words(job) == words


def test_assets_are_in_the_package(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        assert client.get("/ui/static/ui.js").headers["Content-Type"].startswith(
            "text/javascript")
        assert client.get("/ui/static/other.js").status_code == 404
        assert AUTH  # the helpers' credentials are the ones used above


# From the attack on the dashboard: the pages follow the rules of the API paths they read,
# and each control the rule of the path it sends to.
PATH_RULES = [
    Rule("/scheduler", roles={"GET": {"reader", "admin", "monitor", "operator"},
                              "POST": {"admin", "operator"}, "*": "admin"}),
    Rule("/scheduler/jobs", roles={"GET": {"reader", "admin", "operator"},
                                   "POST": {"admin", "operator"}, "*": "admin"}),
    Rule("/scheduler/shutdown", roles={"*": "admin"}),
    Rule("/scheduler/jobs/critical", roles={"GET": {"reader", "admin", "operator"},
                                            "*": "admin"}),
]


def test_pages_and_controls_follow_the_rules_of_the_api_paths_they_use(tmp_path):
    scheduler, app = make_role_app(tmp_path, PATH_RULES)
    scheduler.start()
    try:
        client = Client(app)
        for job_id in ("secret-job", "critical"):
            assert client.post("/scheduler/jobs", headers=as_user("admin"), json={
                "id": job_id, "func": "tests.tasks:record", "args": ["SECRETARG"],
                "trigger": "interval", "hours": 1}).status_code == 200
        for path in ("/scheduler/ui/jobs", "/scheduler/ui/jobs?q=secret",
                     "/scheduler/ui/jobs/secret-job", "/scheduler/ui/jobs/secret-job/edit"):
            answer = client.get(path, headers=as_user("monitor"))
            assert answer.status_code == 403 and "SECRETARG" not in answer.text, path
        assert client.get("/scheduler/jobs", headers=as_user("monitor")).status_code == 403
        assert client.get("/scheduler/ui/", headers=as_user("monitor")).status_code == 200
        operator = as_user("operator")
        front = client.get("/scheduler/ui/", headers=operator).text
        assert "/scheduler/pause" in front and "/scheduler/shutdown" not in front
        critical = client.get("/scheduler/ui/jobs/critical", headers=operator).text
        assert "data-method=" not in critical  # pause, run, delete: admin only there
        other = client.get("/scheduler/ui/jobs/secret-job", headers=operator).text
        assert "/scheduler/jobs/secret-job/pause" in other
        assert "data-method=\"DELETE\"" not in other
    finally:
        scheduler.shutdown(wait=False)


def test_a_page_number_of_thousands_of_digits_is_the_first_page(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        answer = client.get("/ui/jobs?page=" + "1" * 5000)
        assert answer.status_code == 200 and "page 1 of" in answer.text


def test_a_broken_job_with_dates_and_bytes_in_its_args_is_shown(tmp_path, vanishing_module):
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        scheduler.add_job("dt", f"{vanishing_module.__name__}:task", name="Nightly dates",
                          args=[datetime.datetime(2026, 1, 1), b"bytes", {1, 2}],
                          trigger="interval", hours=1)
        vanishing_module.gone()
        for path, status in (("/ui/jobs/dt", 200), ("/ui/jobs/dt/edit", 409),
                             ("/ui/jobs?q=nightly", 200)):  # its name is still read
            answer = client.get(path)
            assert answer.status_code == status and "cannot be restored" in answer.text, path


def test_an_id_no_url_can_name_is_listed_without_a_link(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (scheduler, client):
        for job_id in ("x/edit", ".."):
            scheduler.add_job(job_id, "tests.tasks:record", trigger="interval", hours=1)
        page = client.get("/ui/jobs").text
        assert "x%2Fedit" not in page and 'href="/scheduler/ui/jobs/.."' not in page
        assert page.count("the id cannot be a URL") == 2


class FormControls(HTMLParser):
    """The ids, the labels' targets and the form controls of a page (a textarea's text is
    its value)."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.labelled: set[str] = set()
        self.controls: list[dict[str, str | None]] = []
        self._textarea: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"])
        if tag == "label":
            self.labelled.add(found["for"])
        if tag in ("input", "select", "textarea") and found.get("type") != "search":
            self.controls.append(found)
        if tag == "textarea":
            self._textarea = found
            found["value"] = ""

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea["value"] = (self._textarea["value"] or "") + data

    def handle_endtag(self, tag):
        if tag == "textarea":
            self._textarea = None


def form_of(client, path: str) -> FormControls:
    parser = FormControls()
    parser.feed(client.get(path).text)
    return parser


def test_every_form_control_has_its_own_id_and_a_label(tmp_path):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        form = form_of(client, "/ui/new")
        assert len(form.ids) == len(set(form.ids))  # interval and calendarinterval: weeks
        assert [c["id"] for c in form.controls if c["id"] not in form.labelled] == []
        kinds = {c["id"].split("-")[1] for c in form.controls if c["id"].count("-") >= 2}
        assert kinds == {"interval", "cron", "date", "calendarinterval", "and", "or"}


def test_the_form_has_every_field_the_api_takes_for_each_trigger(tmp_path):
    # Saving sends the trigger as a whole: a field the form lacks is dropped from the job.
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        form = form_of(client, "/ui/new")
        for kind, fields in TRIGGER_FIELDS.items():
            controls = {c["name"]: c for c in form.controls
                        if c["id"].startswith(f"f-{kind}-")}
            assert set(controls) == fields, kind
            for name, control in controls.items():
                assert control["id"] == f"f-{kind}-{name}"
                assert f"err-{kind}-{name}" in form.ids
                assert f"err-{kind}-{name}" in (control["aria-describedby"] or "").split()
            if "jitter" in fields:
                assert controls["jitter"]["data-send"] == "number"
                assert f"hint-{kind}-jitter" in form.ids


@pytest.mark.parametrize(("trigger", "shown"), [
    pytest.param({"trigger": "calendarinterval", "months": 1, "hour": 6, "minute": 30,
                  "start_date": "2030-01-31", "timezone": "Europe/Berlin", "jitter": 300},
                 {"months": "1", "hour": "6", "minute": "30", "second": "0", "years": "",
                  "start_date": "2030-01-31", "end_date": "", "timezone": "Europe/Berlin",
                  "jitter": "300"},
                 id="calendarinterval"),
    pytest.param({"trigger": "or", "triggers": [{"trigger": "cron", "hour": "9"}]},
                 {"triggers": '[\n  {\n    "trigger": "cron",\n    "hour": "9",\n'
                              '    "timezone": "UTC",\n    "jitter": null\n  }\n]',
                  "jitter": ""},
                 id="or: its children as JSON"),
    pytest.param({"trigger": "or", "triggers": [{"trigger": "cron", "hour": "9"}],
                  "jitter": 60},
                 {"jitter": "60"}, id="or: its own jitter"),
    pytest.param({"trigger": "interval", "hours": 6, "start_date": "2030-01-31T09:00:00+01:00",
                  "end_date": "2031-01-31T09:00:00.250000+01:00",
                  "timezone": "Europe/Berlin", "jitter": 30},
                 {"hours": "6", "days": "", "start_date": "2030-01-31T09:00:00+01:00",
                  "end_date": "2031-01-31T09:00:00.250000+01:00",
                  "timezone": "Europe/Berlin", "jitter": "30"},
                 id="interval: jitter, start and end dates as the API shows them"),
    pytest.param({"trigger": "cron", "hour": "9", "start_date": "2030-01-31",
                  "end_date": "2030-12-31T18:00:00Z", "jitter": 0},
                 {"hour": "9", "start_date": "2030-01-31T00:00:00+00:00",
                  "end_date": "2030-12-31T18:00:00+00:00", "timezone": "UTC", "jitter": "0"},
                 id="cron: jitter, start and end dates as the API shows them"),
])
def test_the_edit_form_holds_the_jobs_trigger_fields(tmp_path, trigger, shown):
    with running_api(tmp_path / "jobs.sqlite") as (_, client):
        assert client.post("/jobs", json={"id": "j", "func": "tests.tasks:record",
                                          **trigger}).status_code == 200
        page = client.get("/ui/jobs/j/edit").text
        assert f'<option value="{trigger["trigger"]}" selected>' in page
        form = form_of(client, "/ui/jobs/j/edit")
        prefix = f"f-{trigger['trigger']}-"
        values = {c["name"]: c.get("value") for c in form.controls
                  if c["id"].startswith(prefix) and c["name"] in shown}
        assert values == shown
