"""SPEC section 5: sign-in, tokens and endpoints."""

from __future__ import annotations

import pytest

from pool.errors import InvalidArgument, Unauthenticated, Unavailable
from pool.events import PresenceChanged
from pool.presence import AVAILABLE, OFFLINE

from .conftest import ALICE, BOB, PASSWORD, Sim, of_type


def test_sign_in_issues_a_token_that_authenticates(sim: Sim) -> None:
    ep = sim.sign_in(ALICE)
    assert sim.engine.authenticate(ep.token) is ep
    assert ep.uri == ALICE
    assert sim.user(ALICE).current.availability == AVAILABLE
    assert sim.engine.users_signed_in == 1


def test_tokens_differ_per_endpoint(sim: Sim) -> None:
    one, two = sim.sign_in(ALICE, "pc"), sim.sign_in(ALICE, "phone")
    assert one.token != two.token
    assert one.id != two.id
    assert sim.engine.authenticate(two.token) is two
    assert sim.engine.users_signed_in == 1


def test_token_of_a_signed_out_endpoint_is_unauthenticated(sim: Sim) -> None:
    ep = sim.sign_in(ALICE)
    other = sim.sign_in(ALICE, "phone")
    sim.engine.sign_out(ep)
    with pytest.raises(Unauthenticated):
        sim.engine.authenticate(ep.token)
    assert sim.engine.authenticate(other.token) is other


def test_token_of_an_expired_registration_is_unauthenticated(sim: Sim) -> None:
    ep = sim.sign_in(ALICE)
    sim.advance(600)
    with pytest.raises(Unauthenticated):
        sim.engine.authenticate(ep.token)


@pytest.mark.parametrize("token", ["", "not-a-token"])
def test_unknown_token_is_unauthenticated(sim: Sim, token: str) -> None:
    with pytest.raises(Unauthenticated):
        sim.engine.authenticate(token)


def test_wrong_password_is_unauthenticated(sim: Sim) -> None:
    with pytest.raises(Unauthenticated):
        sim.engine.check_password(ALICE, PASSWORD + "x")
    with pytest.raises(Unauthenticated):
        sim.engine.check_password(ALICE, "")
    assert sim.engine.check_password(ALICE, PASSWORD) is sim.user(ALICE)


@pytest.mark.parametrize("uri", ["", "alice@contoso.com"])
def test_malformed_user_uri_is_invalid(sim: Sim, uri: str) -> None:
    with pytest.raises(InvalidArgument, match="user_uri"):
        sim.engine.check_password(uri, PASSWORD)


def test_unknown_user_sign_in_is_unauthenticated_like_a_wrong_password(sim: Sim) -> None:
    """No user enumeration: an unknown user fails exactly like a wrong password."""
    with pytest.raises(Unauthenticated) as unknown:
        sim.engine.check_password("sip:nobody@contoso.com", PASSWORD)
    with pytest.raises(Unauthenticated) as wrong:
        sim.engine.check_password(ALICE, "wrong")
    assert "nobody" not in unknown.value.message
    assert "wrong user URI or password" in unknown.value.message
    assert "wrong user URI or password" in wrong.value.message


def test_sign_out_makes_the_user_offline_for_watchers(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.subscribe(bob, [ALICE], 0)
    sim.engine.sign_out(alice)
    [change] = of_type(sim.drain(bob), PresenceChanged)
    assert (change.presence.availability, change.presence.endpoints) == (OFFLINE, 0)
    assert sim.engine.users_signed_in == 1


def test_shutdown_signs_everyone_out_and_refuses_sign_in(sim: Sim) -> None:
    alice, bob = sim.sign_in(ALICE), sim.sign_in(BOB)
    sim.engine.shutdown()
    assert alice.signed_out
    assert bob.signed_out
    assert len(sim.engine.registrar) == 0
    with pytest.raises(Unavailable):
        sim.sign_in(ALICE)
    with pytest.raises(Unavailable):
        sim.engine.authenticate(alice.token)


def test_empty_device_is_named_unknown(sim: Sim) -> None:
    assert sim.sign_in(ALICE, "").device == "unknown"


def test_provision_validates_input(sim: Sim) -> None:
    with pytest.raises(InvalidArgument, match="count"):
        sim.engine.provision("u", "contoso.com", 0, 0, PASSWORD)
    with pytest.raises(InvalidArgument, match="domain"):
        sim.engine.provision("u", "not a domain", 1, 0, PASSWORD)
    with pytest.raises(InvalidArgument, match="prefix"):
        sim.engine.provision("u@x", "contoso.com", 1, 0, PASSWORD)


def test_provision_twice_reports_existing_users(sim: Sim) -> None:
    result = sim.engine.provision("user", "contoso.com", 8, 0, PASSWORD)
    assert (result.created, result.already_existed) == (2, 6)
    assert (result.first_uri, result.last_uri) == (ALICE, "sip:user7@contoso.com")
