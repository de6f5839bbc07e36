"""A Flask service that accepts authbooks access tokens, verified with Flask-JWT-Extended.

- Keys: auth-service's JWKS (`jwks_uri` from its discovery document), chosen by `kid`, refetched
  on an unknown `kid` (PyJWT's PyJWKClient, at most once per JWKS_REFETCH_COOLDOWN seconds).
- Checks: RS256 only, signature, `iss` (the discovery `issuer`), `aud`, `exp`, `nbf`, and an
  access token (`type`); then revocation, from a local replica of auth-service's revocation
  stream (revocations.py).

Settings (environment): AUTH_ISSUER (required, e.g. http://127.0.0.1:8081), CLIENT_ID and
CLIENT_SECRET (a client with the scope `revocations:read`), JWT_AUDIENCE (default
`authbooks-api`), REVOCATIONS_URL (default AUTH_ISSUER + /revocations), JWT_LEEWAY (seconds,
default 30), JWKS_REFETCH_COOLDOWN (seconds, default 30), REVOCATION_STALENESS_MS (how long the
revocation stream may be down before tokens are answered 503, default 5000), LISTEN_ADDR
(default 127.0.0.1:5000).
"""

from __future__ import annotations

import logging
import os
import time

import jwt
import requests
from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, get_jwt, jwt_required

from revocations import RevocationFeed, RevocationsUnavailable


class KeysUnavailable(Exception):
    """The JWKS could not be fetched."""


def discover(issuer: str, wait: float = 30.0) -> dict:
    """The issuer's discovery document, retried while auth-service is starting."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    deadline = time.monotonic() + wait
    while True:
        try:
            response = requests.get(url, timeout=5)
            response.raise_for_status()
            document = response.json()
            break
        except requests.RequestException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    if document.get("issuer") != issuer:  # OpenID Connect Discovery 1.0, section 4.3
        raise RuntimeError(f"discovery document names issuer {document.get('issuer')!r}")
    return document


def create_app(issuer: str, audience: str, client_id: str, client_secret: str, *,
               revocations_url: str | None = None, leeway: int = 30,
               jwks_cooldown: float = 30.0, revocation_staleness: float = 5.0) -> Flask:
    document = discover(issuer)
    jwks = jwt.PyJWKClient(document["jwks_uri"], cooldown_duration=jwks_cooldown, timeout=10)
    feed = RevocationFeed(revocations_url or issuer.rstrip("/") + "/revocations",
                          document["token_endpoint"], client_id, client_secret,
                          reconnect_grace=revocation_staleness).start()

    app = Flask(__name__)
    app.config.update(
        JWT_ALGORITHM="RS256",
        JWT_DECODE_ALGORITHMS=["RS256"],
        JWT_DECODE_ISSUER=issuer,
        JWT_DECODE_AUDIENCE=audience,
        JWT_DECODE_LEEWAY=leeway,
        JWT_TOKEN_LOCATION=["headers"],
    )
    manager = JWTManager(app)
    app.extensions["revocation_feed"] = feed

    @manager.decode_key_loader
    def public_key(header: dict, _claims: dict):
        try:
            return jwks.get_signing_key(header.get("kid")).key
        except jwt.PyJWKClientConnectionError as error:
            raise KeysUnavailable(str(error)) from error
        except jwt.PyJWKClientError as error:  # unknown kid (after a refetch)
            raise jwt.InvalidTokenError(str(error)) from error

    @manager.token_verification_loader
    def has_required_claims(_header: dict, claims: dict) -> bool:
        return all(name in claims for name in ("sub", "jti", "iat", "nbf", "exp"))

    @manager.token_in_blocklist_loader
    def revoked(_header: dict, claims: dict) -> bool:
        return feed.is_revoked(claims)

    # Error answers in the authbooks shape; Flask-JWT-Extended's default for a bad token is 422.
    def error(status: int, code: str, message: str):
        response = jsonify(error=code, message=message)
        response.status_code = status
        if status == 401:
            response.headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{code}"'
        return response

    manager.invalid_token_loader(lambda reason: error(401, "invalid_token", reason))
    manager.unauthorized_loader(lambda reason: error(401, "missing_token", reason))
    manager.expired_token_loader(lambda _h, _c: error(401, "token_expired", "the token has expired"))
    manager.revoked_token_loader(lambda _h, _c: error(401, "token_revoked", "the token has been revoked"))
    manager.token_verification_failed_loader(lambda _h, _c: error(401, "invalid_token", "a claim is missing"))
    app.register_error_handler(RevocationsUnavailable, lambda e: error(503, "unavailable", str(e)))
    app.register_error_handler(KeysUnavailable, lambda e: error(503, "unavailable", str(e)))

    @app.get("/hello")
    @jwt_required()
    def hello():
        claims = get_jwt()
        return jsonify(sub=claims["sub"], username=claims.get("username"))

    @app.get("/readyz")
    def readyz():
        if feed.ready():
            return jsonify(status="ready")
        return error(503, "unavailable", "the revocation list is not loaded yet")

    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(
        os.environ["AUTH_ISSUER"],
        os.environ.get("JWT_AUDIENCE", "authbooks-api"),
        os.environ["CLIENT_ID"],
        os.environ["CLIENT_SECRET"],
        revocations_url=os.environ.get("REVOCATIONS_URL"),
        leeway=int(os.environ.get("JWT_LEEWAY", "30")),
        jwks_cooldown=float(os.environ.get("JWKS_REFETCH_COOLDOWN", "30")),
        revocation_staleness=int(os.environ.get("REVOCATION_STALENESS_MS", "5000")) / 1000,
    )
    host, _, port = os.environ.get("LISTEN_ADDR", "127.0.0.1:5000").rpartition(":")
    # Werkzeug's server is for development; in production run create_app() under a WSGI server
    # without preloading (e.g. plain gunicorn), so that each worker starts its own feed thread.
    app.run(host=host, port=int(port), threaded=True)


if __name__ == "__main__":
    main()
