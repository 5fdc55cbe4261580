"""How the OpenAPI schema describes the LMS's JWTs (drf-spectacular knows DRF's own authentications only) and the
answers every protected operation may give."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

#: DRF's answer to a refused request: ``{"detail": "..."}``.
DETAIL = {"application/json": {"schema": {"type": "object", "properties": {"detail": {"type": "string"}},
                                          "required": ["detail"]}}}
SAFE_METHODS = {"get", "head", "options"}


class LmsJwtScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """edx-drf-extensions' ``JwtAuthentication``: ``Authorization: JWT <token>`` issued by the LMS."""

    target_class = "edx_rest_framework_extensions.auth.jwt.authentication.JwtAuthentication"
    name = "lmsJwt"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "a JWT issued by the LMS, as `JWT <token>`"}


def refusals(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """A postprocessing hook: every operation that needs authentication may answer 401 (no or bad credentials),
    and every write 403 too (not an editor, or a session request without its CSRF token)."""
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            security = operation.get("security")
            if not security or {} in security:
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("401", {"description": "no credentials, or credentials not accepted",
                                         "content": DETAIL})
            if method not in SAFE_METHODS:
                responses.setdefault("403", {"description": "not an editor (staff or groups_consumer.change_group), "
                                                            "or a session request without its CSRF token",
                                             "content": DETAIL})
    return result
