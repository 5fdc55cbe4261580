"""The web surface: the REST API (DRF, OpenAPI), its authentication and permissions, and ``/health``.

Views are thin: they parse the request, call ``groups_consumer.api`` and shape the answer.
"""
