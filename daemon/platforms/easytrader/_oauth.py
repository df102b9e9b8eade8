"""The OAuth2 authorization code + PKCE parts of the login, pure, on Authlib's RFC 6749 / 7636 helpers: the verifier
and its S256 challenge, the authorize URL, the code read from the callback, the token request's form.

Authlib's own clients speak requests and httpx, not aiohttp, and this identity server needs every redirect read by
hand on one cookie jar; so the HTTP stays the session's and only these protocol pieces come from the library."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from authlib.common.security import generate_token
from authlib.oauth2.base import OAuth2Error
from authlib.oauth2.rfc6749.parameters import (
    parse_authorization_code_response,
    prepare_grant_uri,
    prepare_token_request,
)
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from daemon.platforms.easytrader._endpoints import AUTHORIZE_PATH, CLIENT_ID, SCOPE, VERIFIER_LENGTH


@dataclass(frozen=True, slots=True)
class Pkce:
    """One login's PKCE pair: a 96-character verifier [confirmed live length] and its S256 challenge."""

    verifier: str = field(repr=False)
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = generate_token(VERIFIER_LENGTH)
        return cls(verifier, create_s256_code_challenge(verifier))


def authorize_url(identity_url: str, redirect_uri: str, challenge: str) -> str:
    """Step 1's GET (easytrader-api.md): every parameter as the SPA sends it, the scope space-separated."""
    return prepare_grant_uri(
        identity_url.rstrip("/") + AUTHORIZE_PATH,
        CLIENT_ID,
        "code",
        redirect_uri=redirect_uri,
        scope=SCOPE,
        code_challenge=challenge,
        code_challenge_method="S256",
        response_mode="query",
    )


def code_from(location: str, redirect_uri: str) -> str | None:
    """The authorization code of a redirect to our redirect_uri (step 4), or None: not the callback, or no code
    (an OAuth error answered instead)."""
    target, wanted = urlsplit(location), urlsplit(redirect_uri)
    if (target.scheme, target.netloc, target.path) != (wanted.scheme, wanted.netloc, wanted.path):
        return None
    try:
        code = parse_authorization_code_response(location).get("code")
    except OAuth2Error:
        return None
    return code if isinstance(code, str) and code else None


def token_form(code: str, redirect_uri: str, verifier: str) -> str:
    """Step 5's urlencoded body: the code, the redirect_uri and the PKCE verifier for client easy_pkce."""
    return prepare_token_request(
        "authorization_code", code=code, redirect_uri=redirect_uri, client_id=CLIENT_ID, code_verifier=verifier
    )
