"""Property-based tests (hypothesis) of the two promises authmw makes.

(a) Whatever the ``Authorization`` header holds, the middleware answers 401 or calls the app,
    never raises, and the app only ever sees the one pair the callback accepts; every
    well-formed encoding of that pair is accepted.
(b) A path that some reading maps under ``/scheduler`` (built from a grammar of the tricks
    routers fall for) never reaches the protected view of ``tests/bypass_apps.py``'s werkzeug
    and Flask apps without credentials (401, or 400 past the readings bound), and
    ``PrefixMatcher.select`` never raises.
(c) A path that no reading maps under ``/scheduler`` reaches the app without credentials, so
    that (b) is not trivially "everything is 401".

Each property runs 500 examples; the ``slow``-marked variant runs 20,000
(``pytest -m slow tests/test_properties.py``).
"""

from __future__ import annotations

import base64
import time
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from authmw import AuthMiddleware, HTTPBasicAuth
from authmw.paths import PrefixMatcher

from .bypass_apps import PROTECTED_MARKER, guarded_flask, guarded_werkzeug
from .conftest import RecordingApp, call

#: (examples, marks): the normal run and the slow one.
EXAMPLE_COUNTS = [
    pytest.param(500, id="500"),
    pytest.param(20_000, id="20000", marks=pytest.mark.slow),
]


def run_property(examples: int, strategy: st.SearchStrategy[Any], check: Any) -> None:
    """Run ``check(example)`` over ``examples`` examples drawn from ``strategy``."""

    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(strategy)
    def run(example: Any) -> None:
        check(example)

    run()


# --------------------------------------------------------------------------------------------
# (a) Authorization headers
# --------------------------------------------------------------------------------------------

VALID_USER = "admin"
#: A colon (the first one splits), a space and non-ASCII letters: its UTF-8 and its latin-1
#: encodings are both well-formed (latin-1 is tried when the bytes are not UTF-8).
VALID_PASSWORD = "pä:ss wörd"
VALID_PAIR = (VALID_USER, VALID_PASSWORD)


class Guarded:
    """The middleware over a recording app, with a callback that accepts only VALID_PAIR."""

    def __init__(self) -> None:
        self.app = RecordingApp()
        self.verdicts: list[tuple[Any, Any, bool]] = []
        self.middleware = AuthMiddleware(self.app, auth=HTTPBasicAuth(),
                                         prefixes=["/scheduler"])
        self.middleware.authenticate(self.callback)

    def callback(self, auth: Any) -> bool:
        verdict = (auth["username"], auth["password"]) == VALID_PAIR
        self.verdicts.append((auth["username"], auth["password"], verdict))
        return verdict

    def request(self, authorization: str) -> tuple[int, dict[str, Any] | None]:
        """Send one request; return (status, the environ the app saw or None)."""
        self.app.seen.clear()
        self.verdicts.clear()
        answer = call(self.middleware, "/scheduler/jobs", authorization=authorization)
        assert len(self.app.seen) <= 1
        seen = self.app.seen[0] if self.app.seen else None
        if seen is None:
            assert answer.status == 401, answer  # never 500: neither handler nor callback fails
            assert answer.body == b"Access Denied"
            assert all(not verdict for *_, verdict in self.verdicts)
        else:
            assert answer.status == 200
        return answer.status, seen


GUARDED = Guarded()


def random_case(draw: st.DrawFn, word: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(word), max_size=len(word)))
    return "".join(c.upper() if flip else c.lower() for c, flip in zip(word, flips, strict=True))


@st.composite
def well_formed_valid_headers(draw: st.DrawFn) -> str:
    """Every RFC 9110/7617 spelling of the valid pair: scheme case, 1*SP, OWS, charset."""
    encoding = draw(st.sampled_from(["utf-8", "latin-1"]))
    token = base64.b64encode(f"{VALID_USER}:{VALID_PASSWORD}".encode(encoding)).decode()
    scheme = random_case(draw, "basic")
    spaces = " " * draw(st.integers(1, 3))
    leading = draw(st.sampled_from(["", " ", "\t", " \t"]))
    trailing = draw(st.sampled_from(["", " ", "\t", "\t "]))
    return f"{leading}{scheme}{spaces}{token}{trailing}"


JUNK = st.sampled_from([",", ", ", ",Basic YTpi", "\x00", "\r\n", "\n", "\r", "\t", " ", "\x7f",
                        "\x1b", "=", "==", "-", "_", ":", "é", "\xff", "\u2028", "\ufeff",
                        "\udcff", "Basic ", "%3D", "\\", '"', "'", "\x85"])


def b64_of(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@st.composite
def credential_bytes(draw: st.DrawFn) -> bytes:
    """Random user:password bytes, the valid pair, and near misses of it."""
    choice = draw(st.integers(0, 6))
    if choice == 0:
        return draw(st.binary(max_size=64))
    if choice == 1:
        user = draw(st.text(max_size=16))
        password = draw(st.text(max_size=16))
        return f"{user}:{password}".encode("utf-8", "surrogatepass")
    if choice == 2:
        return f"{VALID_USER}:{VALID_PASSWORD}".encode(draw(st.sampled_from(["utf-8",
                                                                              "latin-1"])))
    if choice == 3:  # the valid pair, one character changed, inserted or removed
        text = f"{VALID_USER}:{VALID_PASSWORD}"
        index = draw(st.integers(0, len(text)))
        change = draw(st.sampled_from(["insert", "delete", "replace", "swapcase"]))
        char = draw(st.characters(max_codepoint=0x2FF))
        if change == "insert":
            text = text[:index] + char + text[index:]
        elif change == "delete":
            text = text[:index] + text[index + 1:]
        elif change == "replace":
            text = text[:index] + char + text[index + 1:]
        else:
            text = text.swapcase()
        return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1", "cp1252"])),
                           "replace")
    if choice == 4:  # the valid pair with the colon moved, doubled or missing
        return draw(st.sampled_from([
            f"{VALID_USER}{VALID_PASSWORD}", f"{VALID_USER}::{VALID_PASSWORD}",
            f":{VALID_USER}:{VALID_PASSWORD}", f"{VALID_USER}:{VALID_PASSWORD}\x00",
            f"{VALID_USER}\x00:{VALID_PASSWORD}", f"{VALID_USER} :{VALID_PASSWORD}",
            f"{VALID_USER}:{VALID_PASSWORD} ", f"{VALID_USER}:{VALID_PASSWORD}\n",
            f"{VALID_USER}:{VALID_PASSWORD}".upper(), f"{VALID_PASSWORD}:{VALID_USER}",
        ])).encode("utf-8")
    if choice == 5:  # the valid pair in another normalisation or an encoding that never decodes
        return draw(st.sampled_from([
            "admin:pa\u0308:ss wo\u0308rd".encode(), "admin:pä:ss wörd".encode("utf-16"),
            "admin:pä:ss wörd".encode("utf-8-sig"),
            "\uff21\uff24\uff2d\uff29\uff2e:pä:ss wörd".encode(),  # full-width ADMIN
        ]))
    return b""


def mutate_base64(draw: st.DrawFn, token: str) -> str:
    """Padding, alphabet and bit mutations of a base64 token (canonical or not)."""
    mutation = draw(st.sampled_from(["none", "strip-padding", "extra-padding", "padding-bits",
                                     "urlsafe", "line-break", "truncate", "lowercase", "space",
                                     "inner-padding"]))
    if mutation == "strip-padding":
        return token.rstrip("=")
    if mutation == "extra-padding":
        return token + "=" * draw(st.integers(1, 3))
    if mutation == "padding-bits" and token.endswith("="):
        # Change the bits that the padding makes unused: the same bytes, not canonical.
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        body = token.rstrip("=")
        last = alphabet.index(body[-1])
        unused = 0b1111 if token.endswith("==") else 0b11
        flipped = alphabet[(last & ~unused) | draw(st.integers(1, unused))]
        return body[:-1] + flipped + token[len(body):]
    if mutation == "urlsafe":
        return token.replace("+", "-").replace("/", "_")
    if mutation == "line-break" and len(token) > 4:
        index = draw(st.integers(1, len(token) - 1))
        return token[:index] + draw(st.sampled_from(["\n", "\r\n", " ", "\t"])) + token[index:]
    if mutation == "truncate" and token:
        return token[: draw(st.integers(0, len(token) - 1))]
    if mutation == "lowercase":
        return token.lower()
    if mutation == "space":
        return " " + token
    if mutation == "inner-padding" and len(token) > 4:
        return token[:4] + "=" + token[4:]
    return token


@st.composite
def near_valid_basic_headers(draw: st.DrawFn) -> str:
    """Basic headers close to valid: scheme case and look-alikes, separators, mutated base64."""
    scheme = draw(st.one_of(
        st.just(random_case(draw, "basic")),
        st.sampled_from(["Basic", "BasicX", "Basi", "Bearer", "Digest", "Basic:", "B asic",
                         "Bas\u0131c", "Ba\u017fic", "Basic\x00", "", "Basic,"]),
    ))
    separator = draw(st.sampled_from([" ", "  ", "", "\t", " \t", ",", ": ", "=", "\x0b", " \n ",
                                      "\xa0"]))
    token = mutate_base64(draw, b64_of(draw(credential_bytes())))
    header = f"{scheme}{separator}{token}"
    for _ in range(draw(st.integers(0, 2))):  # junk inserted anywhere
        index = draw(st.integers(0, len(header)))
        header = header[:index] + draw(JUNK) + header[index:]
    if draw(st.booleans()):
        header = draw(st.sampled_from(["", " ", "\t", "\n"])) + header
    if draw(st.booleans()):
        header += draw(st.sampled_from(["", " ", "\t", ",", ", Basic " + b64_of(b"a:b")]))
    if draw(st.integers(0, 20)) == 0:
        header = header * draw(st.integers(2, 400))  # long, sometimes over the 8 KiB bound
    return header


AUTHORIZATION_VALUES = st.one_of(
    st.text(),                                                       # any text
    st.text(st.characters(codec="latin-1")),                         # what a server can give
    st.binary().map(lambda raw: raw.decode("latin-1")),              # binary-ish latin-1
    st.text(st.characters(categories=["Cs", "Cc", "Zs", "Zl", "Zp"])),  # surrogates, controls
    near_valid_basic_headers(),
    well_formed_valid_headers(),
)


def check_only_the_valid_pair_gets_through(authorization: str) -> None:
    note(f"Authorization: {authorization!r}")
    _, seen = GUARDED.request(authorization)
    if seen is None:
        return
    granted = seen["authmw.authorization"]
    pair = (granted["username"], granted["password"])
    assert pair == VALID_PAIR
    assert seen["REMOTE_USER"] == VALID_USER
    assert GUARDED.verdicts == [(*pair, True)]  # the callback said yes to exactly this pair


def check_every_well_formed_encoding_is_accepted(authorization: str) -> None:
    note(f"Authorization: {authorization!r}")
    status, seen = GUARDED.request(authorization)
    assert status == 200 and seen is not None
    assert (seen["authmw.authorization"]["username"],
            seen["authmw.authorization"]["password"]) == VALID_PAIR


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_any_authorization_header_is_refused_or_is_exactly_the_valid_pair(examples):
    run_property(examples, AUTHORIZATION_VALUES, check_only_the_valid_pair_gets_through)


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_every_well_formed_encoding_of_the_valid_pair_is_accepted(examples):
    run_property(examples, well_formed_valid_headers(),
                 check_every_well_formed_encoding_is_accepted)


def test_the_header_strategies_reach_both_outcomes():
    """A guard on the guard: the generated headers are not all refused (nor all accepted)."""
    outcomes = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(AUTHORIZATION_VALUES)
    def run(authorization: str) -> None:
        outcomes.add(GUARDED.request(authorization)[0])

    run()
    assert outcomes == {200, 401}


# --------------------------------------------------------------------------------------------
# (b) and (c) paths
# --------------------------------------------------------------------------------------------

MATCHER = PrefixMatcher(["/scheduler"])
#: Beyond this a single select() is too slow (the readings are bounded: it must stay far below).
MATCH_TIME_BOUND = 0.5


def percent_encode(draw: st.DrawFn, char: str, depth: int) -> str:
    """``char`` percent-encoded ``depth`` times (UTF-8 bytes), hex digits in a random case;
    each level after the first encodes either every character or only the '%'."""
    text = char
    for level in range(depth):
        if level and draw(st.booleans()):
            text = text.replace("%", "%25")  # '%73' -> '%2573'
            continue
        hexes = "".join(f"%{byte:02X}" for byte in text.encode("utf-8"))  # '%73' -> '%25%37%33'
        text = hexes if draw(st.booleans()) else hexes.lower()
    return text


@st.composite
def scheduler_word(draw: st.DrawFn) -> str:
    """'scheduler': letters in any case, any of them percent-encoded 0 to 3 times, 's' maybe
    as U+017F (long s, which case-insensitive matchers take for 's'), a tab or newline maybe
    inserted (some readers drop them)."""
    letters = []
    for index, letter in enumerate("scheduler"):
        if index == 0 and draw(st.integers(0, 9)) == 0:
            letter = "\u017f"
        elif draw(st.booleans()):
            letter = letter.upper()
        depth = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3]))
        if letter == "\u017f" and depth == 0:
            depth = 1  # a raw non-ASCII character is sent as its UTF-8 bytes anyway
        letters.append(percent_encode(draw, letter, depth))
    if draw(st.integers(0, 9)) == 0:
        index = draw(st.integers(1, len(letters) - 1))
        letters.insert(index, draw(st.sampled_from(["%09", "%0A", "%0d", "%2509"])))
    return "".join(letters)


SEPARATORS = ["/", "//", "///", "\\", "%5C", "%5c", "%2F", "%2f", "%252F", "%25252f", "/./",
              "/%2e/", "/%2E/", "/.%2F", "//./", "\\.\\", "/;/", "/;x=1/", "/%3B/", "%2F%2F"]
JUNK_SEGMENT = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~",
    min_size=1, max_size=6)
DOTDOTS = ["..", "%2e%2e", "%2E%2E", ".%2e", "%2e.", "%252e%252e", "..;", "..;x", ".%252E",
           "%25252e%25252e"]


@st.composite
def climb(draw: st.DrawFn) -> str:
    """A junk segment and a '..' that takes it back: '/junk/..', in any spelling."""
    junk = draw(JUNK_SEGMENT)
    if draw(st.booleans()):
        junk += ";" + draw(JUNK_SEGMENT)  # params on the junk segment
    return (draw(st.sampled_from(["/", "\\", "%2F", "%5C"])) + junk
            + draw(st.sampled_from(["/", "\\", "%2F", "%2f", "%5C", "%252F"]))
            + draw(st.sampled_from(DOTDOTS)))


LEADERS = st.one_of(
    st.just(""),
    st.sampled_from(["/.", "/%2e", "/%2E", "/..", "/%2e%2e", "/;x", "/;", "//", "/%3B",
                     "/.;", "/%252e"]),
    climb(),
)

SUFFIXES = st.one_of(
    st.sampled_from(["", "/", "/jobs", "/jobs/x", ";jsessionid=1", ";x/jobs", ";", "%3Bx/jobs",
                     "%00", "%00-admin", "%2500", "%3Fx", "%23x", "%3F/../public", "/.",
                     "%2F", "%2Fjobs", "%5Cjobs", "/./jobs", "//jobs", "/jobs/..", "?x=1",
                     "?/../public", "%252Fjobs", "/jobs/%2e%2e", "%09", "/%FF", "/%C3%A9"]),
    st.builds(lambda sep, junk: sep + junk, st.sampled_from(["/", "//", "%2F", "\\"]),
              JUNK_SEGMENT),
)


@st.composite
def protected_targets(draw: st.DrawFn) -> str:
    """A request target that some reading (decoding, '\\' as '/', ';params' dropped, slashes
    merged, dots resolved, NUL/?/# cut, tabs dropped, case folded) maps under /scheduler."""
    leaders = draw(st.lists(LEADERS, max_size=3))
    separator = draw(st.sampled_from(SEPARATORS))
    path = "".join(leaders) + separator + draw(scheduler_word()) + draw(SUFFIXES)
    if not path.startswith(("/", "\\", "%")) or draw(st.integers(0, 9)) == 0:
        path = "/" + path
    form = draw(st.integers(0, 19))
    if form == 0:
        return "http://evil.example" + path  # absolute-form target
    if form == 1:
        return path.lstrip("/") or "scheduler"  # no leading '/'
    return path


def path_info(target: str) -> str:
    """What a PEP 3333 server puts in PATH_INFO (as tests/test_path_bypass.py's path_info)."""
    if "://" in target:
        return target
    return unquote_to_bytes(target.split("?", 1)[0]).decode("latin-1")


def timed_select(path: str) -> tuple[str, ...] | None:
    started = time.perf_counter()
    selected = MATCHER.select(path)
    assert time.perf_counter() - started < MATCH_TIME_BOUND
    assert selected in (None, (), ("/scheduler",))
    return selected


def check_protected_target(target: str) -> None:
    path = path_info(target)
    note(f"target {target!r} -> PATH_INFO {path!r}")
    selected = timed_select(path)  # the README: "any reading" under the prefix
    assert selected != ()
    for app in (guarded_werkzeug, guarded_flask):
        answer = call(app, path)
        assert answer.status == (401 if selected else 400), (app, answer)
        assert PROTECTED_MARKER not in answer.body


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_a_path_some_reading_puts_under_the_prefix_never_reaches_the_view(examples):
    run_property(examples, protected_targets(), check_protected_target)


@st.composite
def grammar_or_garbage_paths(draw: st.DrawFn) -> str:
    """Any PATH_INFO at all: text, latin-1 bytes, grammar pieces strung together at random."""
    pieces = st.sampled_from(
        [*SEPARATORS, *DOTDOTS, "scheduler", "SCHEDULER", "%", "%2", "%25", "%%", ";", "?", "#",
         "\x00", "\t", "\n", "http://", "\\\\", ".", "..", "%C5%BF", "\xc5\xbf", "\u0130",
         "%u0073", "%%32%35", "%C0%AF", "%e0%80%af"]
    )
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.text())
    if choice == 1:
        return draw(st.binary()).decode("latin-1")
    if choice == 2:
        return "".join(draw(st.lists(st.one_of(pieces, JUNK_SEGMENT), max_size=40)))
    return draw(st.text(alphabet="/%25.\\;scheduler?#\x00", max_size=200))


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_prefix_matcher_never_raises_and_stays_bounded(examples):
    def check(path: str) -> None:
        selected = timed_select(path)
        # Soundness against the simplest readings: a plain or once-decoded path under the
        # prefix is always matched (the full readings are checked in check_protected_target).
        for reading in (path, unquote(path, errors="replace")):
            folded = reading.casefold()
            if folded == "/scheduler" or folded.startswith("/scheduler/"):
                assert selected != (), reading

    run_property(examples, grammar_or_garbage_paths(), check)


# (c) paths that no reading maps under /scheduler: no 's' in any spelling (no 's', 'S',
# '%73', '%53', U+017F, 'ß' or ligatures), so that no decoding can ever produce the word.
PUBLIC_CHARACTERS = "abfgijkmnopqtvwxyzABFGIJKMNOPQTVWXYZ0123456789-_~!$&'()*+,=:@é"
PUBLIC_SEGMENT = st.text(alphabet=PUBLIC_CHARACTERS, min_size=1, max_size=8)


@st.composite
def public_segment(draw: st.DrawFn) -> str:
    """A segment without 's' in any spelling; some characters percent-encoded 1-2 times."""
    encoded = []
    for char in draw(PUBLIC_SEGMENT):
        depth = draw(st.sampled_from([0, 0, 0, 1, 2]))
        encoded.append(percent_encode(draw, char, depth or (1 if char == "é" else 0)))
    return "".join(encoded)


@st.composite
def public_targets(draw: st.DrawFn) -> str:
    parts = ["/public"]
    for _ in range(draw(st.integers(0, 3))):
        parts.append(draw(st.sampled_from(["/", "//", "\\", "%2F", "/./", "/;p=1/", "/..%2F"])))
        parts.append(draw(public_segment()))
    if draw(st.booleans()):
        parts.append(draw(st.sampled_from(["/", ";jid=1", "?x=1", "%00x", "/.", "%3Fq"])))
    return "".join(parts)


def has_no_s_in_any_spelling(path: str) -> bool:
    """Independent of authmw: decode up to 4 times as latin-1 and UTF-8; no 's' look-alike."""
    candidates = {path}
    for _ in range(4):
        for text in list(candidates):
            raw = unquote_to_bytes(text.encode("utf-8", "surrogatepass"))
            candidates |= {raw.decode("latin-1"), raw.decode("utf-8", "replace")}
    return not any(set(text.casefold()) & {"s", "\u017f", "\u00df", "\ufb05", "\ufb06"}
                   for text in candidates)


def check_public_target(target: str) -> None:
    path = path_info(target)
    note(f"target {target!r} -> PATH_INFO {path!r}")
    assert has_no_s_in_any_spelling(path)
    assert timed_select(path) == ()
    app = RecordingApp()
    middleware = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/scheduler"])
    middleware.authenticate(lambda auth: False)
    answer = call(middleware, path)
    assert (answer.status, len(app.seen)) == (200, 1)  # reached the app, unauthenticated
    assert "authmw.authorization" not in app.seen[0]
    for guarded in (guarded_werkzeug, guarded_flask):
        assert call(guarded, path).status != 401


@pytest.mark.parametrize("examples", EXAMPLE_COUNTS)
def test_a_path_no_reading_puts_under_the_prefix_reaches_the_app(examples):
    run_property(examples, public_targets(), check_public_target)


# --------------------------------------------------------------------------------------------
# Found by the properties above (and fixed in b86eaa3): the README promises Basic credentials
# with "no control characters", and C1 control characters (U+0080-U+009F, category Cc, e.g.
# NEL and the 8-bit CSI) got through to REMOTE_USER.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"admin\x85:secret", "admin\u0085:secret".encode(),
                                 b"admin\x9b[31m:secret", "admin:sec\u009fret".encode()],
                         ids=["latin-1-NEL", "utf-8-NEL", "latin-1-CSI", "utf-8-APC-in-password"])
def test_basic_credentials_with_c1_control_characters_are_refused(raw):
    app = RecordingApp()
    middleware = AuthMiddleware(app, auth=HTTPBasicAuth(), prefixes=["/"])
    middleware.authenticate(lambda auth: True)  # a callback that would take anyone
    answer = call(middleware, "/x", authorization="Basic " + base64.b64encode(raw).decode())
    assert (answer.status, app.seen) == (401, [])
