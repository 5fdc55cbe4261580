"""Who may use the REST API, and how: JWTs of the LMS, DRF tokens, sessions with CSRF; ``serve``'s own guard."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework_jwt.settings import api_settings as jwt_api_settings

from groups_consumer.broker import _free_port
from groups_consumer.settings import DEFAULT_SECRET_KEY
from tests.facts import leaf

pytestmark = pytest.mark.django_db
ISSUER, AUDIENCE, JWT_KEY = "http://lms.test/oauth2", "groups-consumer", "the-lms-signing-key-of-32-bytes-or-more"
DOC = {"name": "listed", "scope": {"type": "instance"}, "rule": leaf("manual", "in", user_ids=[1, 2])}
READS = ["/api/v1/groups/", "/api/v1/criteria/", "/api/v1/status/", "/api/v1/users/1/groups/",
         "/api/v1/users/1/changes/", "/api/v1/schema/", "/api/v1/docs/"]


def _reload_jwt_settings():
    """drf-jwt reads ``JWT_AUTH`` once, at import, and does not listen to setting changes: read it again."""
    jwt_api_settings.reload()
    jwt_api_settings._user_settings = settings.JWT_AUTH


@contextmanager
def lms_issuer(**extra):
    """``JWT_AUTH`` trusting one issuer with a symmetric key, as an LMS deployment configures it."""
    issuers = [{"ISSUER": ISSUER, "SECRET_KEY": JWT_KEY, "AUDIENCE": AUDIENCE}]
    try:
        with override_settings(JWT_AUTH={**settings.JWT_AUTH, "JWT_ISSUERS": issuers, **extra}):
            _reload_jwt_settings()
            yield
    finally:
        _reload_jwt_settings()


def lms_jwt(username="lms-user", *, key=JWT_KEY, administrator=False, issuer=ISSUER, audience=AUDIENCE):
    """A JWT as the LMS issues it (openedx/core/djangoapps/oauth_dispatch/jwt.py), signed HS256 with ``key``."""
    now = timezone.now()
    payload = {"iss": issuer, "aud": audience, "exp": now + timedelta(minutes=5), "iat": now,
               "preferred_username": username, "email": f"{username}@example.com", "administrator": administrator,
               "version": "1.2.0", "user_id": 42, "sub": "f2c1a6b0e5", "scopes": ["read", "write", "email"],
               "filters": [], "is_restricted": False, "email_verified": True, "name": "A Learner",
               "grant_type": "password"}
    return jwt.encode(payload, key, algorithm="HS256")


def jwt_client(token):
    return Client(HTTP_AUTHORIZATION=f"JWT {token}")


def token_client(user):
    return Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")


@pytest.fixture
def staff():
    return User.objects.create_user("staff", password="pw", is_staff=True)


@pytest.fixture
def reader():
    return User.objects.create_user("reader", password="pw")


def test_anonymous_clients_get_401_everywhere():
    client = Client()
    for url in READS:
        answer = client.get(url)
        assert answer.status_code == 401, url
        assert answer["WWW-Authenticate"].startswith("JWT")
    for url in ["/api/v1/groups/", "/api/v1/groups/preview/", "/api/v1/groups/1/sync/"]:
        assert client.post(url, DOC, content_type="application/json").status_code == 401, url
    assert client.delete("/api/v1/groups/1/").status_code == 401


def test_authenticated_non_staff_reads_but_may_not_write(reader):
    client = token_client(reader)
    for url in READS:
        assert client.get(url).status_code == 200, url
    for url in ["/api/v1/groups/", "/api/v1/groups/preview/"]:
        answer = client.post(url, DOC, content_type="application/json")
        assert answer.status_code == 403, url
        assert "permission" in answer.json()["detail"]
    assert client.delete("/api/v1/groups/1/").status_code == 403


def test_the_change_group_permission_makes_an_editor(reader):
    reader.user_permissions.add(Permission.objects.get(codename="change_group",
                                                       content_type__app_label="groups_consumer"))
    client = token_client(User.objects.get(pk=reader.pk))
    assert client.post("/api/v1/groups/preview/", DOC, content_type="application/json").status_code == 200
    created = client.post("/api/v1/groups/", DOC, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json()["name"] == "listed"
    assert client.delete(f"/api/v1/groups/{created.json()['id']}/").status_code == 204


def test_drf_tokens_authenticate_and_bad_ones_are_refused(staff):
    client = token_client(staff)
    assert client.get("/api/v1/groups/").json() == {"count": 0, "next": None, "previous": None, "results": []}
    assert client.post("/api/v1/groups/", DOC, content_type="application/json").status_code == 201
    assert Client(HTTP_AUTHORIZATION="Token not-a-token").get("/api/v1/groups/").status_code == 401


def test_a_jwt_of_the_configured_issuer_is_accepted_and_makes_the_user():
    with lms_issuer():
        answer = jwt_client(lms_jwt("ada")).get("/api/v1/groups/")
        assert answer.status_code == 200, answer.content
        ada = User.objects.get(username="ada")
        assert ada.email == "ada@example.com" and not ada.is_staff
        # a learner's JWT reads, it does not write
        assert jwt_client(lms_jwt("ada")).post("/api/v1/groups/", DOC, content_type="application/json"
                                               ).status_code == 403


def test_jwts_signed_otherwise_or_for_others_are_refused():
    with lms_issuer():
        for token in [lms_jwt(key="another-key-of-32-bytes-or-more-too"), lms_jwt(issuer="http://elsewhere.test"),
                      lms_jwt(audience="another-service"), lms_jwt(key=settings.SECRET_KEY), "not.a.jwt"]:
            answer = jwt_client(token).get("/api/v1/groups/")
            assert answer.status_code == 401, (token, answer.content)
        expired = jwt.encode({**jwt.decode(lms_jwt(), options={"verify_signature": False}),
                              "exp": timezone.now() - timedelta(minutes=1)}, JWT_KEY, algorithm="HS256")
        assert jwt_client(expired).get("/api/v1/groups/").status_code == 401
    assert not User.objects.exists()


def test_no_jwt_is_accepted_when_no_issuer_is_configured():
    """The default ``JWT_AUTH`` trusts nobody: not even a token signed with Django's own SECRET_KEY without issuer
    nor audience (drf-jwt's fallback), nor one whose signature nobody can check."""
    _reload_jwt_settings()
    claims = jwt.decode(lms_jwt(administrator=True), options={"verify_signature": False})
    anonymous_issuer = {name: value for name, value in claims.items() if name not in {"iss", "aud"}}
    for key in [settings.SECRET_KEY, JWT_KEY]:
        for payload in [claims, anonymous_issuer]:
            token = jwt.encode(payload, key, algorithm="HS256")
            assert jwt_client(token).get("/api/v1/groups/").status_code == 401, (key, payload)
    assert not User.objects.exists()


def test_an_lms_administrator_may_write():
    with lms_issuer():
        client = jwt_client(lms_jwt("admin", administrator=True))
        created = client.post("/api/v1/groups/", DOC, content_type="application/json")
        assert created.status_code == 201, created.content
        assert User.objects.get(username="admin").is_staff


def test_session_writes_need_the_csrf_token(staff):
    client = Client(enforce_csrf_checks=True)
    assert client.get("/admin/login/").status_code == 200  # sets the CSRF cookie, as any page with a form does
    csrf = client.cookies["csrftoken"].value
    client.force_login(staff)
    assert client.get("/api/v1/groups/").status_code == 200
    refused = client.post("/api/v1/groups/preview/", DOC, content_type="application/json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    answer = client.post("/api/v1/groups/preview/", DOC, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert answer.status_code == 200, answer.content
    created = client.post("/api/v1/groups/", DOC, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert created.status_code == 201, created.content


def test_serve_refuses_the_default_secret_key():
    with override_settings(SECRET_KEY=DEFAULT_SECRET_KEY), \
            pytest.raises(CommandError, match="refusing to serve with the built-in default DJANGO_SECRET_KEY"):
        call_command("groups_serve", "--port", "1")


@pytest.mark.slow
def test_serve_answers_health_and_the_schema(tmp_path):
    """``serve`` refuses the default key; with a real one, after ``migrate``, it answers /health and, to a staff
    user's token made by ``drf_create_token``, the schema."""
    command = str(Path(sys.executable).parent / "groups-consumer")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}", "LOG_FORMAT": "json",
           "DJANGO_SUPERUSER_PASSWORD": "pw"}
    env.pop("DJANGO_SECRET_KEY", None)
    refused = subprocess.run([command, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "default DJANGO_SECRET_KEY" in refused.stderr
    env["DJANGO_SECRET_KEY"] = "a-real-secret-key-for-this-test-only-0123456789"
    subprocess.run([command, "migrate", "--no-input"], env=env, capture_output=True, check=True, timeout=120)
    subprocess.run([command, "createsuperuser", "--no-input", "--username", "admin", "--email", "a@example.com"],
                   env=env, capture_output=True, check=True, timeout=60)
    made = subprocess.run([command, "drf_create_token", "admin"], env=env, capture_output=True, text=True,
                          check=True, timeout=60)
    key = made.stdout.split()[2]
    port = _free_port()
    server = subprocess.Popen([command, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5) as answer:
                    assert json.load(answer) == {"status": "ok"}
                    break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "serve did not answer /health within 60 s"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            urllib.request.urlopen(f"{base}/api/v1/schema/", timeout=10)
        assert anonymous.value.code == 401
        request = urllib.request.Request(f"{base}/api/v1/schema/?format=json",
                                         headers={"Authorization": f"Token {key}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            schema = json.load(answer)
        assert schema["openapi"].startswith("3.") and "/api/v1/groups/" in schema["paths"]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
