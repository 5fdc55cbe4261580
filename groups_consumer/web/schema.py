"""How the OpenAPI schema describes the LMS's JWTs (drf-spectacular knows DRF's own authentications only)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema


class LmsJwtScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """edx-drf-extensions' ``JwtAuthentication``: ``Authorization: JWT <token>`` issued by the LMS."""

    target_class = "edx_rest_framework_extensions.auth.jwt.authentication.JwtAuthentication"
    name = "lmsJwt"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "a JWT issued by the LMS, as `JWT <token>`"}
