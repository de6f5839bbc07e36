"""The Flask and Node examples against a real auth-service: what they accept and refuse."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import KINDS, LATENCIES, CuttableProxy, ExampleService, unverified, wait_until

REVOCATION_DEADLINE = 1.0  # seconds from the revoking answer to the example refusing


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def refused_within(service: ExampleService, token: str, what: str) -> float:
    """Poll until `service` refuses `token` as revoked; record and return the delay."""
    start = time.monotonic()
    while True:
        response = service.hello(token)
        elapsed = time.monotonic() - start
        if response.status_code == 401:
            assert response.json()["error"] == "token_revoked", response.text
            LATENCIES.append((what, service.kind, elapsed))
            return elapsed
        assert response.status_code == 200, response.text
        assert elapsed < REVOCATION_DEADLINE, f"{service.kind} still accepts the token after {elapsed:.3f} s"
        time.sleep(0.01)


def assert_refused(response: requests.Response, code: str = "invalid_token") -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == code, response.text


# --- accepted --------------------------------------------------------------------------------

def test_a_user_access_token_is_accepted(auth, service):
    user = auth.new_user()
    access = user.login()["access_token"]
    response = service.hello(access)
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": unverified(access)[1]["sub"], "username": user.username}


def test_a_service_token_is_accepted(auth, client, service):
    response = requests.post(f"{auth.url}/oauth/token", timeout=10,
                             auth=(client["client_id"], client["client_secret"]),
                             data={"grant_type": "client_credentials"})
    assert response.status_code == 200, response.text
    access = response.json()["access_token"]
    answer = service.hello(access)
    assert answer.status_code == 200, answer.text
    assert answer.json()["sub"] == client["client_id"]


# --- refused: not a valid access token -------------------------------------------------------

def test_no_token_or_garbage_is_refused(service):
    assert_refused(service.hello(None), "missing_token")
    assert_refused(service.hello("not.a.jwt"))
    assert_refused(service.hello("abc"))


def test_a_refresh_token_is_refused(auth, service):
    refresh = auth.new_user().login()["refresh_token"]
    assert_refused(service.hello(refresh))


def test_a_token_for_another_audience_is_refused(auth, twin_auth, service):
    # Same keys and issuer as `auth`, another JWT_AUDIENCE: the tokens differ only in `aud`.
    other = twin_auth("auth-other-audience", audience="other-api", public_url=auth.issuer)
    access = other.new_user().login()["access_token"]
    ours = auth.new_user().login()["access_token"]
    (header, claims), (our_header, our_claims) = unverified(access), unverified(ours)
    assert (header["kid"], claims["iss"]) == (our_header["kid"], our_claims["iss"])
    assert (claims["aud"], our_claims["aud"]) == ("other-api", "authbooks-api")
    assert_refused(service.hello(access))
    assert service.hello(ours).status_code == 200


def test_a_token_from_another_issuer_is_refused(auth, twin_auth, service):
    # Same keys as `auth`, another AUTH_PUBLIC_URL: the tokens differ only in `iss`.
    other = twin_auth("auth-other-issuer")
    access = other.new_user().login()["access_token"]
    header, claims = unverified(access)
    assert claims["iss"] == other.url != auth.issuer
    assert header["kid"] in {key["kid"] for key in requests.get(
        f"{auth.url}/.well-known/jwks.json", timeout=10).json()["keys"]}
    assert_refused(service.hello(access))


class Forger:
    """Signs tokens with auth-service's own current private key (read from its keys dir)."""

    def __init__(self, auth):
        self.auth = auth
        real = auth.new_user().login()["access_token"]
        self.header, self.claims = unverified(real)
        jwks = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=10).json()["keys"]
        n = next(k["n"] for k in jwks if k["kid"] == self.header["kid"])
        for pem in Path(auth.keys_dir).glob("*.pem"):
            key = serialization.load_pem_private_key(pem.read_bytes(), password=None)
            numbers = key.public_key().public_numbers()
            if jwt.utils.base64url_encode(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8,
                                                            "big")).decode() == n:
                self.key = key
                break
        else:
            raise AssertionError("no key file matches the signing kid")

    def token(self, headers: dict | None = None, key=None, algorithm: str = "RS256", **claims) -> str:
        now = int(time.time())
        body = {**self.claims, "jti": str(uuid.uuid4()), "iat": now, "nbf": now, "exp": now + 300}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        header = {"kid": self.header["kid"], **(headers or {})}
        header = {k: v for k, v in header.items() if v is not None}
        return jwt.encode(body, key if key is not None else self.key, algorithm=algorithm,
                          headers=header)


@pytest.fixture(scope="module")
def forger(auth):
    return Forger(auth)


def test_a_token_signed_like_ours_is_accepted(forger, service):
    # The control for the forgeries below: the key and claims are right.
    assert service.hello(forger.token()).status_code == 200


@pytest.mark.parametrize("case", [
    "wrong issuer", "no issuer", "wrong audience", "expired", "not yet valid", "no exp",
    "no kid", "unknown kid", "another key", "HS256 with the public key", "alg none",
])
def test_a_forged_token_is_refused(forger, service, case):
    now = int(time.time())
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = forger.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if case == "wrong issuer":
        token = forger.token(iss="http://127.0.0.1:1")
    elif case == "no issuer":
        token = forger.token(iss=None)
    elif case == "wrong audience":
        token = forger.token(aud="other-api")
    elif case == "expired":
        token = forger.token(iat=now - 900, nbf=now - 900, exp=now - 120)
    elif case == "not yet valid":
        token = forger.token(nbf=now + 120, exp=now + 600)
    elif case == "no exp":
        token = forger.token(exp=None)
    elif case == "no kid":
        token = forger.token(headers={"kid": None})
    elif case == "unknown kid":
        token = forger.token(headers={"kid": "no-such-kid"})
    elif case == "another key":
        token = forger.token(key=other_key)
    elif case == "HS256 with the public key":
        # PyJWT refuses to HMAC with a PEM key; build the token by hand.
        import hashlib
        import hmac
        import json
        segments = [jwt.utils.base64url_encode(json.dumps(part).encode()) for part in (
            {"alg": "HS256", "typ": "JWT", "kid": forger.header["kid"]},
            {**forger.claims, "iat": now, "nbf": now, "exp": now + 300})]
        signing_input = b".".join(segments)
        signature = hmac.new(public_pem, signing_input, hashlib.sha256).digest()
        token = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
    elif case == "alg none":
        token = jwt.encode({**forger.claims, "iat": now, "nbf": now, "exp": now + 300}, None,
                           algorithm="none", headers={"kid": forger.header["kid"]})
    response = service.hello(token)
    expected = "token_expired" if case == "expired" else "invalid_token"
    assert_refused(response, expected)


# --- refused: revoked ------------------------------------------------------------------------

def test_logout_is_refused_within_a_second(auth, service):
    tokens = auth.new_user().login()
    assert service.hello(tokens["access_token"]).status_code == 200
    response = requests.post(f"{auth.url}/auth/logout", headers=bearer(tokens["access_token"]),
                             json={"refresh_token": tokens["refresh_token"]}, timeout=10)
    assert response.status_code == 204, response.text
    refused_within(service, tokens["access_token"], "logout (token)")


def test_logout_all_refuses_every_session_within_a_second(auth, service):
    user = auth.new_user()
    first, second = user.login(), user.login()
    for tokens in (first, second):
        assert service.hello(tokens["access_token"]).status_code == 200
    response = requests.post(f"{auth.url}/auth/logout-all", headers=bearer(first["access_token"]),
                             timeout=10)
    assert response.status_code == 204, response.text
    refused_within(service, second["access_token"], "logout-all (user, other session)")
    refused_within(service, first["access_token"], "logout-all (user, own token)")


def test_a_password_change_keeps_only_the_changers_token(auth, service):
    user = auth.new_user()
    changer, other = user.login(), user.login()
    response = requests.post(f"{auth.url}/auth/password", headers=bearer(changer["access_token"]),
                             json={"current_password": user.password,
                                   "new_password": user.password + "-new"}, timeout=30)
    assert response.status_code == 204, response.text
    refused_within(service, other["access_token"], "password change (user, except_jti)")
    # The changer's own access token stays valid (the cut-off's except_jti).
    assert service.hello(changer["access_token"]).status_code == 200


def test_ending_a_session_refuses_its_older_tokens(auth, service):
    tokens = auth.new_user().login()
    refreshed = requests.post(f"{auth.url}/auth/refresh", headers=bearer(tokens["refresh_token"]),
                              timeout=10)
    assert refreshed.status_code == 200, refreshed.text
    newer = refreshed.json()
    assert unverified(newer["access_token"])[1]["sid"] == unverified(tokens["access_token"])[1]["sid"]
    assert service.hello(tokens["access_token"]).status_code == 200
    response = requests.delete(f"{auth.url}/auth/session", headers=bearer(newer["access_token"]),
                               timeout=10)
    assert response.status_code == 204, response.text
    # The older access token was never named: only its session (`sid`) was revoked.
    refused_within(service, tokens["access_token"], "session end (session, older token)")


@pytest.mark.parametrize("kind", KINDS)
def test_a_revocation_made_before_start_comes_from_the_snapshot(auth, client, workdir, kind):
    tokens = auth.new_user().login()
    response = requests.post(f"{auth.url}/auth/logout", headers=bearer(tokens["access_token"]),
                             timeout=10)
    assert response.status_code == 204, response.text
    late = ExampleService(kind, auth, client, workdir / "late")
    try:
        late.wait_ready()
        assert_refused(late.hello(tokens["access_token"]), "token_revoked")
        assert late.hello(auth.new_user().login()["access_token"]).status_code == 200
    finally:
        late.stop()


@pytest.mark.parametrize("kind", KINDS)
def test_the_feed_fails_closed_when_cut_and_resumes_without_a_gap(auth, client, workdir, kind):
    proxy = CuttableProxy(auth.port)
    cut_off = ExampleService(kind, auth, client, workdir / "cut", extra_env={
        "REVOCATIONS_URL": f"{proxy.url}/revocations", "REVOCATION_STALENESS_MS": "1500"})
    try:
        cut_off.wait_ready()
        user = auth.new_user()
        kept, revoked = user.login(), user.login()
        assert cut_off.hello(revoked["access_token"]).status_code == 200
        # An event while connected moves the cursor past the snapshot's.
        first = auth.new_user().login()
        requests.post(f"{auth.url}/auth/logout", headers=bearer(first["access_token"]), timeout=10)
        wait_until(lambda: cut_off.hello(first["access_token"]).status_code == 401, timeout=1,
                   what="the first revocation")

        proxy.cut()
        response = requests.post(f"{auth.url}/auth/logout", headers=bearer(revoked["access_token"]),
                                 timeout=10)
        assert response.status_code == 204, response.text
        # Down for longer than REVOCATION_STALENESS_MS: it refuses to decide.
        unavailable = wait_until(
            lambda: (lambda r: r if r.status_code == 503 else None)(cut_off.hello(kept["access_token"])),
            timeout=5, what="503 while the feed is cut")
        assert unavailable.json()["error"] == "unavailable"
        heads_before = len(proxy.request_heads)

        proxy.resume()
        wait_until(lambda: cut_off.hello(kept["access_token"]).status_code == 200, timeout=10,
                   interval=0.1, what="the feed to come back")
        # The revocation made while it was cut arrived through the resumed stream.
        assert_refused(cut_off.hello(revoked["access_token"]), "token_revoked")
        resumed = [head for head in proxy.request_heads[heads_before:]
                   if head.startswith("GET /revocations/stream")]
        assert resumed and "last-event-id:" in resumed[-1].lower(), proxy.request_heads
        assert not any(head.startswith("GET /revocations ") or head.startswith("GET /revocations?")
                       for head in proxy.request_heads[heads_before:]), "the snapshot was reloaded"
    finally:
        cut_off.stop()
        proxy.close()


# --- keys ------------------------------------------------------------------------------------

def test_a_key_rotation_is_survived(auth, service):
    user = auth.new_user()
    old = user.login()["access_token"]
    old_kid = unverified(old)[0]["kid"]
    assert service.hello(old).status_code == 200
    auth.rotate_key()
    new = wait_until(lambda: (lambda t: t if unverified(t)[0]["kid"] != old_kid else None)(
        user.login()["access_token"]), timeout=20, interval=0.3, what="a token with the new kid")
    jwks = requests.get(f"{auth.url}/.well-known/jwks.json", timeout=10).json()
    assert {old_kid, unverified(new)[0]["kid"]} <= {key["kid"] for key in jwks["keys"]}
    # The example has not seen the new kid yet: it refetches the JWKS (after its cooldown, 1 s
    # in these tests).
    wait_until(lambda: service.hello(new).status_code == 200, timeout=5, interval=0.2,
               what=f"{service.kind} to accept the new kid")
    assert service.hello(old).status_code == 200, "a token signed with the old key is refused"
