"""Third-party OAuth clients, unmodified, configured from auth-service's discovery document alone:
Authlib (Python) and openid-client (Node)."""

from __future__ import annotations

import json
import os
import subprocess
from urllib.parse import parse_qs

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from conftest import EXAMPLES, unverified

WELL_KNOWN = ("oauth-authorization-server", "openid-configuration")


@pytest.fixture(scope="module")
def oauth_client(auth) -> dict:
    return auth.create_client(["revocations:read", "introspect"], name="examples-oauth-clients")


@pytest.fixture(autouse=True)
def secure_transport_checks(monkeypatch):
    # Authlib skips its https checks when this is set; these tests want them.
    monkeypatch.delenv("AUTHLIB_INSECURE_TRANSPORT", raising=False)


# --- discovery -------------------------------------------------------------------------------

@pytest.mark.parametrize("which", WELL_KNOWN)
def test_the_metadata_passes_authlibs_rfc8414_validation(auth, which):
    document = auth.discovery(which)
    # Authlib requires https URLs but, as RFC 8252 allows, counts http on a loopback address as
    # secure: the test instance's http://127.0.0.1:PORT issuer is validated as it is.
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == auth.issuer
    assert document["token_endpoint"] == f"{auth.issuer}/oauth/token"
    assert document["revocation_endpoint"] == f"{auth.issuer}/oauth/revoke"
    assert document["introspection_endpoint"] == f"{auth.issuer}/oauth/introspect"
    assert document["jwks_uri"] == f"{auth.issuer}/.well-known/jwks.json"
    assert "client_credentials" in document["grant_types_supported"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        document["token_endpoint_auth_methods_supported"])
    assert {"books:read", "books:write", "introspect", "revocations:read"} <= set(
        document["scopes_supported"])


def test_authlib_refuses_a_non_loopback_http_issuer(auth):
    # So the validation above is not vacuous.
    document = dict(auth.discovery("oauth-authorization-server"), issuer="http://auth.example.test")
    with pytest.raises(ValueError, match="issuer"):
        AuthorizationServerMetadata(document).validate()


@pytest.mark.parametrize("which", WELL_KNOWN)
def test_an_https_public_url_gives_metadata_valid_for_any_host(twin_auth, which):
    # Served over plain http here, but every URL in it says https, as behind a TLS proxy.
    public = twin_auth("auth-https", public_url="https://auth.example.test")
    document = public.discovery(which)
    AuthorizationServerMetadata(document).validate()
    assert document["issuer"] == "https://auth.example.test"
    urls = [value for key, value in document.items() if key.endswith(("_endpoint", "_uri"))]
    assert urls and all(url.startswith("https://auth.example.test/") for url in urls), urls


# --- Authlib ---------------------------------------------------------------------------------

def authlib_session(client: dict, method: str, seen: list) -> OAuth2Session:
    session = OAuth2Session(client["client_id"], client["client_secret"],
                            token_endpoint_auth_method=method,
                            revocation_endpoint_auth_method=method,
                            scope="revocations:read introspect")
    session.hooks["response"].append(lambda response, **_: seen.append(response.request))
    return session


def authenticated_as(request) -> str:
    """How a recorded request authenticated the client: basic, post or none."""
    body = request.body or ""
    if isinstance(body, bytes):
        body = body.decode()
    if request.headers.get("Authorization", "").startswith("Basic "):
        return "client_secret_basic"
    if "client_secret" in parse_qs(body):
        return "client_secret_post"
    return "none"


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_credentials(auth, oauth_client, method):
    document = auth.discovery("oauth-authorization-server")
    seen: list = []
    session = authlib_session(oauth_client, method, seen)
    token = session.fetch_token(document["token_endpoint"], grant_type="client_credentials")
    assert authenticated_as(seen[-1]) == method
    assert token["token_type"].lower() == "bearer"
    assert set(token["scope"].split()) == {"revocations:read", "introspect"}
    assert token["expires_in"] > 0
    assert "refresh_token" not in token
    header, claims = unverified(token["access_token"])
    assert claims["sub"] == oauth_client["client_id"]
    assert claims["iss"] == document["issuer"]
    assert claims["roles"] == [] and "username" not in claims
    assert set(claims["scope"].split()) == {"revocations:read", "introspect"}
    assert header["alg"] == "RS256" and header["kid"]

    # The session sends the token as a bearer token on any other request.
    feed = session.get(f"{auth.url}/revocations", timeout=10)
    assert feed.status_code == 200, feed.text
    assert isinstance(feed.json()["items"], list) and "cursor" in feed.json()


def test_authlib_introspects_and_revokes(auth, oauth_client):
    document = auth.discovery("oauth-authorization-server")
    seen: list = []
    session = authlib_session(oauth_client, "client_secret_basic", seen)
    token = session.fetch_token(document["token_endpoint"], grant_type="client_credentials")
    access = token["access_token"]

    introspected = session.introspect_token(document["introspection_endpoint"], token=access)
    assert introspected.status_code == 200, introspected.text
    body = introspected.json()
    assert body["active"] is True
    assert body.get("client_id", body.get("sub")) == oauth_client["client_id"]
    assert set(body["scope"].split()) == {"revocations:read", "introspect"}

    user_token = auth.new_user().login()["access_token"]
    about_user = session.introspect_token(document["introspection_endpoint"], token=user_token,
                                          token_type_hint="access_token").json()
    assert about_user["active"] is True
    assert about_user["sub"] == unverified(user_token)[1]["sub"]

    revoked = session.revoke_token(document["revocation_endpoint"], token=access,
                                   token_type_hint="access_token")
    assert revoked.status_code == 200, revoked.text
    assert authenticated_as(seen[-1]) == "client_secret_basic"
    after = session.introspect_token(document["introspection_endpoint"], token=access).json()
    assert after == {"active": False}
    feed = requests.get(f"{auth.url}/revocations", timeout=10,
                        headers={"Authorization": f"Bearer {access}"})
    assert feed.status_code == 401, feed.text

    garbage = session.introspect_token(document["introspection_endpoint"], token="garbage").json()
    assert garbage == {"active": False}


def test_authlib_sees_rfc6749_errors(auth, oauth_client):
    token_endpoint = auth.discovery("oauth-authorization-server")["token_endpoint"]
    wrong = OAuth2Session(oauth_client["client_id"], "wrong-secret",
                          token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError) as error:
        wrong.fetch_token(token_endpoint, grant_type="client_credentials")
    assert error.value.error == "invalid_client"

    greedy = OAuth2Session(oauth_client["client_id"], oauth_client["client_secret"],
                           token_endpoint_auth_method="client_secret_post", scope="books:write")
    with pytest.raises(OAuthError) as error:
        greedy.fetch_token(token_endpoint, grant_type="client_credentials")
    assert error.value.error == "invalid_scope"

    response = requests.post(token_endpoint, auth=(oauth_client["client_id"],
                                                   oauth_client["client_secret"]),
                             data={"grant_type": "password", "username": "x", "password": "y"},
                             timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unsupported_grant_type"

    unknown = requests.post(token_endpoint, auth=("no-such-client", "secret"),
                            data={"grant_type": "client_credentials"}, timeout=10)
    assert unknown.status_code == 401, unknown.text
    assert unknown.json()["error"] == "invalid_client"
    assert unknown.headers.get("WWW-Authenticate", "").lower().startswith("basic")


# --- openid-client ---------------------------------------------------------------------------

@pytest.mark.parametrize("discovery", ["oidc", "oauth2"])
@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_openid_client_client_credentials(auth, oauth_client, discovery, method):
    env = dict(os.environ, ISSUER=auth.issuer, CLIENT_ID=oauth_client["client_id"],
               CLIENT_SECRET=oauth_client["client_secret"], AUTH_METHOD=method,
               DISCOVERY=discovery)
    result = subprocess.run(["node", "client-credentials.mjs"], env=env, capture_output=True,
                            text=True, timeout=60, cwd=EXAMPLES / "oauth-clients" / "node")
    assert result.returncode == 0, result.stdout + result.stderr
    seen = json.loads(result.stdout)
    assert seen["issuer"] == auth.issuer
    assert seen["token"]["token_type"].lower() == "bearer"
    assert set(seen["token"]["scope"].split()) == {"revocations:read", "introspect"}
    assert seen["token"]["claims_sub"] == oauth_client["client_id"]
    assert seen["revocations"] == {"status": 200, "items_is_array": True, "has_cursor": True}
    assert seen["introspected"]["active"] is True
    assert seen["after_revocation"] == {"active": False, "feed_status": 401}
    # Every request to auth-service authenticated the client with the chosen method.
    basic = method == "client_secret_basic"
    assert seen["requests"] and all(
        (r["basic"], r["secretInBody"]) == (basic, not basic) for r in seen["requests"]), seen
