"""PasteDeploy filter: ``use = egg:authmw`` in an .ini file (Pyramid, Pylons, any Paste pipeline).

::

    [filter:auth]
    use = egg:authmw
    prefixes = /scheduler /admin
    realm = Scheduler API
    htpasswd = %(here)s/users.htpasswd
    public = /health

``authenticate = package.module:callable`` names a callback instead of ``htpasswd``; one of
the two is required, so that a pipeline can never come up unauthenticated by omission.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apscheduler.util import ref_to_obj

from .auth import HTTPBasicAuth
from .middleware import AuthMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def filter_factory(global_conf: dict[str, Any], **settings: str) -> Callable[
        [WSGIApplication], AuthMiddleware]:
    """Build the filter from the .ini settings; ValueError for anything missing or unknown."""
    known = {"prefixes", "realm", "htpasswd", "authenticate", "public", "cors_preflight"}
    unknown = set(settings) - known
    if unknown:
        raise ValueError(f"unknown authmw setting(s): {', '.join(sorted(unknown))}")
    if ("htpasswd" in settings) == ("authenticate" in settings):
        raise ValueError("authmw needs exactly one of 'htpasswd' or 'authenticate'")
    if "htpasswd" in settings:
        from .htpasswd import HtpasswdFile

        authenticate = HtpasswdFile(settings["htpasswd"]).authenticate
    else:
        authenticate = ref_to_obj(settings["authenticate"])
    prefixes = settings.get("prefixes", "/").split()
    realm = settings.get("realm", HTTPBasicAuth.www_authenticate_realm)
    public = settings.get("public", "").split()
    cors_preflight = settings.get("cors_preflight", "false").strip().lower() in ("true", "1",
                                                                                 "yes", "on")

    def make_filter(app: WSGIApplication) -> AuthMiddleware:
        return AuthMiddleware(app, auth=HTTPBasicAuth(realm=realm), prefixes=prefixes,
                              authenticate=authenticate, public=public,
                              cors_preflight=cors_preflight)

    return make_filter
