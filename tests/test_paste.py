"""The PasteDeploy filter, loaded from a real .ini file with ``loadapp``."""

from __future__ import annotations

import pytest
from paste.deploy import loadapp

from .conftest import ROOT, basic, call

INI = """
[pipeline:main]
pipeline = auth app

[filter:auth]
use = egg:authmw
prefixes = /scheduler /admin
realm = Paste Realm
public = /health
{auth_line}

[app:app]
use = call:tests.paste_app:app_factory
"""


def load(tmp_path, auth_line: str):
    ini = tmp_path / "app.ini"
    ini.write_text(INI.format(auth_line=auth_line))
    return loadapp(f"config:{ini}")


def test_an_ini_pipeline_with_a_named_callback(tmp_path):
    app = load(tmp_path, "authenticate = tests.paste_app:authenticate")
    refused = call(app, "/scheduler/jobs")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Paste Realm"'
    assert call(app, "/admin", authorization=basic("paste", "deploy")).body == b"hello paste"
    assert call(app, "/health").status == 200
    assert call(app, "/elsewhere").status == 200


def test_an_ini_pipeline_with_an_htpasswd_file(tmp_path):
    htpasswd = ROOT / "tests" / "data" / "htpasswd" / "apache.htpasswd"
    app = load(tmp_path, f"htpasswd = {htpasswd}")
    assert call(app, "/scheduler", authorization=basic("sha1", "sha1: secret")).status == 200
    assert call(app, "/scheduler", authorization=basic("sha1", "wrong")).status == 401


@pytest.mark.parametrize(
    ("auth_line", "message"),
    [("", "exactly one"), ("authenticate = tests.paste_app:authenticate\nhtpasswd = /x",
                           "exactly one"),
     ("authenticate = tests.paste_app:authenticate\nrealms = typo", "unknown"),
     ("authenticate = tests.paste_app", "expected package.module:callable"),
     ("authenticate = tests.no_such_module:check", "cannot import tests.no_such_module"),
     ("authenticate = tests.paste_app:no_such_callback", "no 'no_such_callback' there")],
    ids=["neither-callback-nor-htpasswd", "both", "misspelt-setting", "no-colon",
         "missing-module", "missing-callback"],
)
def test_a_misconfigured_filter_refuses_to_load(tmp_path, auth_line, message):
    with pytest.raises(ValueError, match=message):
        load(tmp_path, auth_line)
