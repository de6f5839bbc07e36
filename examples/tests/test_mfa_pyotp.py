"""The second factor against an independent RFC 6238 implementation: pyotp reads the
otpauth:// URI auth-service hands out at enrolment and makes the codes the service accepts."""

from __future__ import annotations

import time

import pyotp
import requests


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def enrol(auth, user) -> tuple[pyotp.TOTP, list[str]]:
    access = user.login()["access_token"]
    started = requests.post(f"{auth.url}/auth/mfa/totp", headers=bearer(access), timeout=30)
    assert started.status_code == 200, started.text
    body = started.json()
    totp = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(totp, pyotp.TOTP)
    assert (totp.secret, totp.digits, totp.interval) == (body["secret"], 6, 30)
    assert totp.issuer == "authbooks" and totp.name == user.username
    confirmed = requests.post(f"{auth.url}/auth/mfa/totp/confirm", headers=bearer(access),
                              json={"code": totp.now()}, timeout=30)
    assert confirmed.status_code == 200, confirmed.text
    return totp, confirmed.json()["recovery_codes"]


def password_step(auth, user) -> str:
    response = requests.post(f"{auth.url}/auth/login", timeout=30,
                             json={"username": user.username, "password": user.password})
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "mfa_required"
    return response.json()["mfa_token"]


def second_step(auth, mfa_token: str, code: str) -> requests.Response:
    return requests.post(f"{auth.url}/auth/login/mfa", timeout=30,
                         json={"mfa_token": mfa_token, "code": code})


def test_pyotp_codes_finish_a_login_once(auth):
    user = auth.new_user()
    totp, _ = enrol(auth, user)
    # The enrolment spent the current step; pyotp's code for the next one (within the ±1 step
    # the service allows) finishes the login.
    code = totp.at(time.time() + 30)
    done = second_step(auth, password_step(auth, user), code)
    assert done.status_code == 200, done.text
    assert done.json()["token_type"].lower() == "bearer"
    # The same code again, on a new login: a replay.
    replay = second_step(auth, password_step(auth, user), code)
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_mfa_code"


def test_a_recovery_code_works_once_and_a_wrong_code_never(auth):
    user = auth.new_user()
    totp, recovery = enrol(auth, user)
    assert len(recovery) == 10 and len(set(recovery)) == 10
    wrong = second_step(auth, password_step(auth, user), "000000" if totp.now() != "000000" else "111111")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_mfa_code"
    first = second_step(auth, password_step(auth, user), recovery[0])
    assert first.status_code == 200, first.text
    again = second_step(auth, password_step(auth, user), recovery[0])
    assert again.status_code == 401 and again.json()["error"] == "invalid_mfa_code"
