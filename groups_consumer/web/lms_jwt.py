"""Decoding the LMS's JWTs: edx-drf-extensions' handler, behind a signature check that cannot be skipped.

edx-drf-extensions (10.x) first tries the asymmetric keys alone and takes the token as verified when that set is
empty, so without ``JWT_PUBLIC_SIGNING_JWK_SET`` any signature passes; and without ``JWT_ISSUERS`` it falls back
to drf-jwt's issuer None keyed by Django's ``SECRET_KEY``. Here a token is accepted only when its signature
verifies with the configured keys (the JWK set and the first issuer's ``SECRET_KEY``, as the LMS signs) and
``JWT_ISSUERS`` names its issuer; edx-drf-extensions then checks the claims, the issuer and the version.
"""

from typing import Any

import jwt
from django.conf import settings
from edx_rest_framework_extensions.auth.jwt import decoder


def decode_handler(token: str) -> dict[str, Any]:
    """The verified payload of an LMS JWT; ``jwt.InvalidTokenError`` when no issuer is configured, when no key
    verifies its signature, or when edx-drf-extensions refuses its claims."""
    issuers = settings.JWT_AUTH.get("JWT_ISSUERS") or []
    if not issuers:
        raise jwt.InvalidTokenError("no JWT issuer is configured (JWT_AUTH's JWT_ISSUERS)")
    first = issuers[0]
    keys = decoder.get_verification_jwk_key_set(asymmetric_keys=settings.JWT_AUTH.get("JWT_PUBLIC_SIGNING_JWK_SET"),
                                                secret_key=first.get("SECRET_KEY"))
    if not keys:
        raise jwt.InvalidTokenError("no JWT verification key is configured")
    decoder.verify_jwk_signature_using_keyset(token, keys, aud=first.get("AUDIENCE"))
    payload: dict[str, Any] = decoder.jwt_decode_handler(token)
    return payload
