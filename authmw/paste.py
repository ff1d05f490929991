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

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .auth import HTTPBasicAuth
from .middleware import AuthMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication


def resolve(reference: str) -> Any:
    """The object ``package.module:name.attr`` names; ValueError naming what is missing."""
    module_name, colon, attributes = reference.partition(":")
    if not colon or not module_name or not attributes:
        raise ValueError(f"authenticate = {reference!r}: expected package.module:callable")
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"authenticate = {reference!r}: cannot import {module_name}: "
                         f"{exc}") from None
    for attribute in attributes.split("."):
        try:
            found = getattr(found, attribute)
        except AttributeError:
            raise ValueError(f"authenticate = {reference!r}: no {attribute!r} there") from None
    return found


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
        authenticate = resolve(settings["authenticate"])
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
