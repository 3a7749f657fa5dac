"""``/v1/keys``: create (key shown once), list (no secrets), revoke; validation as 422."""

from __future__ import annotations

import re

import pytest

from taskforge.apikeys import hash_secret
from tests.unit.gateway.support import MakeGateway, MakeKey, assert_problem, bearer


async def test_create_list_revoke(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    admin, _ = await make_key("admin")
    async with make_gateway() as gateway:
        created = await gateway.post(
            "/v1/keys",
            json={"name": "ci runner", "scopes": ["tasks:write", "tasks:read"], "rate_per_s": 5},
            headers=bearer(admin),
        )
        assert created.status_code == 201, created.text
        new = created.json()
        secret = new["key"]
        used = await gateway.post("/v1/tasks", json={"type": "echo"}, headers=bearer(secret))
        listed = await gateway.get("/v1/keys", headers=bearer(admin))
        revoked = await gateway.delete(f"/v1/keys/{new['id']}", headers=bearer(admin))
        again = await gateway.delete(f"/v1/keys/{new['id']}", headers=bearer(admin))
        after = await gateway.post("/v1/tasks", json={"type": "echo"}, headers=bearer(secret))
        relisted = await gateway.get("/v1/keys", headers=bearer(admin))

    assert re.fullmatch(r"tfk_[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"[0-9a-f]{12}", new["id"])
    assert new["name"] == "ci runner"
    assert sorted(new["scopes"]) == ["tasks:read", "tasks:write"]
    assert (new["rate_per_s"], new["burst"]) == (5.0, None)
    assert "created_at" in new
    assert used.status_code == 200 and used.headers["ratelimit-limit"] == "100"

    assert listed.status_code == 200
    (mine,) = [k for k in listed.json()["items"] if k["id"] == new["id"]]
    assert set(mine) == {
        "id", "name", "scopes", "rate_per_s", "burst", "created_at", "revoked", "last_used_at",
    }  # fmt: skip
    assert mine["revoked"] is False and mine["last_used_at"] is not None
    assert secret not in listed.text and hash_secret(secret) not in listed.text

    assert revoked.status_code == 204 and revoked.content == b""
    assert again.status_code == 204
    assert_problem(after, 401, "unauthorized")
    (gone,) = [k for k in relisted.json()["items"] if k["id"] == new["id"]]
    assert gone["revoked"] is True


async def test_revoking_an_unknown_key_is_404(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    admin, _ = await make_key("admin")
    async with make_gateway() as gateway:
        response = await gateway.delete("/v1/keys/000000000000", headers=bearer(admin))
    assert_problem(response, 404, "key-not-found")


async def test_key_routes_need_admin(make_gateway: MakeGateway, make_key: MakeKey) -> None:
    writer, _ = await make_key("tasks:write", "tasks:read")
    async with make_gateway() as gateway:
        for method, path in (("GET", "/v1/keys"), ("DELETE", "/v1/keys/abc")):
            response = await gateway.request(method, path, headers=bearer(writer))
            assert_problem(response, 403, "insufficient-scope")
        response = await gateway.post(
            "/v1/keys", json={"name": "x", "scopes": ["admin"]}, headers=bearer(writer)
        )
        assert_problem(response, 403, "insufficient-scope")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["root"]}, "scopes"),
        ({"name": "", "scopes": ["admin"]}, "name"),
        ({"name": "bad\nname", "scopes": ["admin"]}, "name"),
        ({"name": "x", "scopes": ["admin"], "rate_per_s": 0}, "rate_per_s"),
        ({"name": "x", "scopes": ["admin"], "burst": 0}, "burst"),
        ({"name": "x", "scopes": ["admin"], "extra": 1}, "extra"),
        ({"scopes": ["admin"]}, "name"),
        ({"name": "x", "scopes": ["admin"], "rate_per_s": "5"}, "rate_per_s"),
        ({"name": "x", "scopes": ["admin"], "burst": True}, "burst"),
        ({"name": "x", "scopes": ["admin"], "burst": 2.0}, "burst"),
    ],
)
async def test_invalid_bodies_are_422_with_field_errors(
    make_gateway: MakeGateway, make_key: MakeKey, body: dict[str, object], field: str
) -> None:
    admin, _ = await make_key("admin")
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/keys", json=body, headers=bearer(admin))
    problem = assert_problem(response, 422, "validation-error")
    assert any(field in err["loc"] for err in problem["errors"]), problem


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"\xff\xfe\x00garbage",
        b"",
        b'{"name": "x", "scopes": ["admin"], "rate_per_s": NaN}',
        b'{"name": "x", "scopes": ["admin"], "rate_per_s": 1e400}',
        b'{"name": ' + b"[" * 5000 + b"}",
        b'{"name": "\\ud800", "scopes": ["admin"]}',
    ],
)
async def test_unparsable_bodies_are_422(
    make_gateway: MakeGateway, make_key: MakeKey, raw: bytes
) -> None:
    admin, _ = await make_key("admin")
    headers = {**bearer(admin), "Content-Type": "application/json"}
    async with make_gateway() as gateway:
        response = await gateway.post("/v1/keys", content=raw, headers=headers)
    assert_problem(response, 422, "validation-error")
