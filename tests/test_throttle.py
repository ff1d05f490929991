"""Throttling that a stranger cannot turn against the operator, in bounded memory."""

from __future__ import annotations

import logging
import tracemalloc
import uuid

import pytest

from authmw import (
    AuthMiddleware,
    HTTPBasicAuth,
    MemoryThrottleStore,
    RedisThrottleStore,
    Rule,
    Throttle,
)
from authmw.throttle import throttle_key

from .conftest import basic, call
from .test_rules import REDIS_URL, FakeClock, check_basic, throttled

OPERATOR_HOME = "198.51.100.77"


def operator_logs_in(middleware, address=OPERATOR_HOME):
    return call(middleware, "/x", authorization=basic("admin", "pw"), REMOTE_ADDR=address).status


def guess(middleware, address, username="admin"):
    return call(middleware, "/x", authorization=basic(username, "guess"),
                REMOTE_ADDR=address).status


@pytest.mark.parametrize(
    "attacker_addresses",
    [["203.0.113.5"] * 6, [f"203.0.113.{index}" for index in range(6)]],
    ids=["one-address", "many-addresses"],
)
def test_a_stranger_guessing_the_operators_name_does_not_keep_the_operator_out(
        recording_app, attacker_addresses):
    middleware, calls = throttled(recording_app, MemoryThrottleStore(clock=FakeClock()))
    assert operator_logs_in(middleware) == 200  # the operator's usual address, once
    statuses = [guess(middleware, address) for address in attacker_addresses]
    assert statuses[:3] == [401, 401, 401]
    assert set(statuses[3:]) == {429}  # the guesses are held, one address or many
    assert len(calls) == 4  # the operator's login and 3 guesses: no hashing past the limit
    assert operator_logs_in(middleware) == 200  # the operator is not held by the username
    assert operator_logs_in(middleware, "192.0.2.200") == 429  # a new address is, for now


def test_a_known_address_is_still_held_by_its_own_count(recording_app):
    middleware, _ = throttled(recording_app, MemoryThrottleStore(clock=FakeClock()))
    assert operator_logs_in(middleware) == 200
    assert [guess(middleware, OPERATOR_HOME) for _ in range(4)] == [401, 401, 401, 429]
    assert operator_logs_in(middleware) == 429


def test_trust_is_per_username_and_ends_after_trusted_for(recording_app):
    clock = FakeClock()
    store = MemoryThrottleStore(clock=clock)
    throttle = Throttle(max_failures=3, window=60, store=store, trusted_for=3600)
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                throttle=throttle)
    assert operator_logs_in(middleware) == 200
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        guess(middleware, address, "reader")
        guess(middleware, address)
    assert call(middleware, "/x", authorization=basic("reader", "pw"),
                REMOTE_ADDR=OPERATOR_HOME).status == 429  # trusted as admin, not as reader
    assert operator_logs_in(middleware) == 200
    clock.now += 3601
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        guess(middleware, address)
    assert operator_logs_in(middleware) == 429  # the trust expired


def test_trust_can_be_turned_off(recording_app):
    store = MemoryThrottleStore(clock=FakeClock())
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                throttle=Throttle(max_failures=3, store=store, trusted_for=0))
    assert operator_logs_in(middleware) == 200
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        guess(middleware, address)
    assert operator_logs_in(middleware) == 429
    assert len(store._remembered) == 0


def test_a_good_login_does_not_give_a_distributed_guesser_a_fresh_allowance(recording_app):
    middleware, _ = throttled(recording_app, MemoryThrottleStore(clock=FakeClock()))
    guess(middleware, "203.0.113.1")
    guess(middleware, "203.0.113.2")
    assert operator_logs_in(middleware) == 200
    assert guess(middleware, "203.0.113.3") == 401
    assert guess(middleware, "203.0.113.4") == 429


def test_keys_are_fixed_size_digests_whatever_the_username():
    throttle = Throttle()
    short, = throttle.keys(None, "a")
    long, = throttle.keys(None, "u" * 6000)
    assert len(short) == len(long) == 34
    assert "u" * 40 not in long
    assert throttle_key("u", "ab", "c") != throttle_key("u", "a", "bc")


def test_the_memory_store_stays_within_its_byte_bound_under_huge_usernames(recording_app):
    store = MemoryThrottleStore(max_bytes=2**20, clock=FakeClock())
    middleware = AuthMiddleware(recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
                                throttle=Throttle(max_failures=10, store=store,
                                                  per_address=False))
    guess(middleware, "203.0.113.1", "warm-up")
    audit = logging.getLogger("authmw.audit")
    level = audit.level
    audit.setLevel(logging.WARNING)  # 20,000 records kept by the log capture would count too
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(20_000):
            guess(middleware, "203.0.113.1", f"{index:06d}" + "x" * 6000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        audit.setLevel(level)
    assert len(store) == 2**20 // MemoryThrottleStore.ENTRY_BYTES
    assert grown < 2**20 + 512 * 1024, grown  # the review measured 139 MB before


def test_a_store_without_the_trust_methods_is_refused_when_configured():
    class OldStore:
        def add_failure(self, key, window): ...
        def blocked_for(self, key, max_failures): return 0.0
        def reset(self, key): ...

    with pytest.raises(TypeError, match="remember, remembers"):
        Throttle(store=OldStore())


@pytest.mark.skipif(not REDIS_URL, reason="set AUTHMW_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379/0)")
def test_trust_is_shared_through_redis(recording_app):
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    store = RedisThrottleStore(client, namespace=f"authmw-test:{uuid.uuid4().hex}:")
    try:
        first, _ = throttled(recording_app, store)
        second, _ = throttled(recording_app, store)  # another worker, same store
        assert operator_logs_in(first) == 200
        for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"):
            guess(second, address, "admin" + "x" * 6000)
            guess(second, address)
        assert operator_logs_in(second) == 200
        assert operator_logs_in(second, "192.0.2.200") == 429
        assert all(len(key) <= len(store.namespace) + 34
                   for key in client.keys(store.namespace + "*"))
        ttl = client.pttl(store.namespace + throttle_key("t", "", "admin", OPERATOR_HOME))
        assert 29 * 86400 * 1000 < ttl <= 30 * 86400 * 1000
    finally:
        client.delete(*client.keys(store.namespace + "*"))


def test_the_default_trust_lasts_thirty_days():
    assert Throttle().trusted_for == 30 * 86400


def test_trust_and_counts_belong_to_the_callback_that_checked_them(recording_app):
    """An attacker who owns 'admin' in a partner store gains no trust for the operator's."""
    partners = {"admin": "mine"}
    store = MemoryThrottleStore(clock=FakeClock())
    middleware = AuthMiddleware(
        recording_app, auth=HTTPBasicAuth(), authenticate=check_basic,
        throttle=Throttle(max_failures=3, store=store),
        rules=[Rule("/partners", authenticate=lambda auth: partners.get(auth["username"])
                    == auth["password"])])
    attacker_calls = []
    for index in range(5):
        address = f"2001:db8::{index}"
        assert call(middleware, "/partners/x", authorization=basic("admin", "mine"),
                    REMOTE_ADDR=address).status == 200
        attacker_calls += [call(middleware, "/scheduler", authorization=basic("admin", "guess"),
                                REMOTE_ADDR=address).status for _ in range(2)]
    assert attacker_calls.count(401) == 3 and attacker_calls.count(429) == 7
    assert call(middleware, "/scheduler", authorization=basic("admin", "pw"),
                REMOTE_ADDR="192.0.2.200").status == 429


def test_a_full_trust_set_keeps_the_trust_it_has():
    clock = FakeClock()
    store = MemoryThrottleStore(max_remembered=3, clock=clock)
    throttle = Throttle(max_failures=1, store=store, trusted_for=100)
    throttle.succeeded(OPERATOR_HOME, "admin")
    for index in range(10):  # a callback that accepts anyone: an attacker logs in as many
        throttle.succeeded("203.0.113.9", f"user{index}")
    assert store.remembers(throttle_key("t", "", "admin", OPERATOR_HOME))
    assert not store.remembers(throttle_key("t", "", "user9", "203.0.113.9"))
    clock.now += 101  # expired trust makes room
    throttle.succeeded("203.0.113.9", "user9")
    assert store.remembers(throttle_key("t", "", "user9", "203.0.113.9"))


def test_a_blocked_username_still_being_tried_survives_a_flood_of_other_failures():
    store = MemoryThrottleStore(max_bytes=100 * MemoryThrottleStore.ENTRY_BYTES,
                                clock=FakeClock())
    throttle = Throttle(max_failures=3, store=store, per_address=False)
    admin = throttle.keys(None, "admin")
    throttle.failed(admin * 3)
    for index in range(1000):
        throttle.failed(throttle.keys(None, f"junk{index}"))
        if index % 50 == 0:
            assert throttle.retry_after(admin) > 0  # the attacker keeps trying admin
    assert throttle.retry_after(admin) > 0
    assert len(store) == 100


def test_one_account_cannot_fill_the_trust_set():
    store = MemoryThrottleStore(max_remembered=40, clock=FakeClock())
    throttle = Throttle(max_failures=3, store=store)
    for index in range(1000):  # the attacker's own account, from many addresses
        throttle.succeeded(f"2001:db8::{index}", "mallory")
    assert len(store._remembered) == 16  # one user holds at most 16
    throttle.succeeded(OPERATOR_HOME, "bob")
    assert store.remembers(throttle_key("t", "", "bob", OPERATOR_HOME))
    assert store.remembers(throttle_key("t", "", "mallory", "2001:db8::999"))
    assert not store.remembers(throttle_key("t", "", "mallory", "2001:db8::0"))
