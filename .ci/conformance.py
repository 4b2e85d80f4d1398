"""Drive a running sandbox (seeded with examples/fixtures/team.yaml) with the official
Supabase Auth client, `supabase_auth.SyncGoTrueAdminAPI` 2.34.1, and with raw HTTP
(urllib) for what that client does not read (pagination headers, PostgREST).

Every answer must parse in the official client. Where the official client and the
contract (/work/shared/spec/supabase-api.md) disagree, the contract wins: the checks
below assert the contract, and the client is only asked to parse. Known disagreements:
- `list_users()` ignores `Link` and `X-Total-Count` (the contract says to use them), so
  those are checked over raw HTTP;
- `list_users()` without arguments sends `page=&per_page=`; GoTrue (and the sandbox)
  read an empty value as absent;
- the client reads `code` from a 2024-01-01 error body only when the response echoes
  `X-Supabase-Api-Version`, which the contract says GoTrue does.
"""

import json
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone

from supabase_auth import SyncGoTrueAdminAPI
from supabase_auth.errors import AuthApiError

URL = os.environ["MAP_SUPABASE_URL"]
KEY = os.environ["MAP_SUPABASE_SERVICE_ROLE_KEY"]

passed = 0
failed = 0


def check(name, fn):
    global passed, failed
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure, keep going
        failed += 1
        print(f"FAIL {name}: {type(e).__name__}: {e}")
    else:
        passed += 1
        print(f"ok   {name}")


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def http(method, path, headers=None, body=None):
    """(status, headers, parsed JSON or text) without raising on 4xx/5xx."""
    h = {"apikey": KEY, "Authorization": f"Bearer {KEY}"}
    h.update(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(URL + path, data=data, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, hdrs, payload


admin = SyncGoTrueAdminAPI(
    url=f"{URL}/auth/v1",
    headers={"apikey": KEY, "Authorization": f"Bearer {KEY}"},
)
state = {}


def list_across_pages():
    seen = []
    page = 1
    while True:
        users = admin.list_users(page=page, per_page=10)
        seen.extend(u.id for u in users)
        if len(users) < 10:
            break
        page += 1
    expect(page == 3, f"24 users at 10 per page is 3 pages, got {page}")
    expect(len(seen) == 24 and len(set(seen)) == 24, f"{len(seen)} ids, {len(set(seen))} distinct")
    expect(all(u.identities is None for u in admin.list_users(page=1, per_page=5)), "list items carry identities")


def list_without_arguments():
    users = admin.list_users()
    expect(len(users) == 24, f"default page of 50 holds all 24, got {len(users)}")


def pagination_headers():
    status, h, body = http("GET", "/auth/v1/admin/users?page=1&per_page=10")
    expect(status == 200, status)
    expect(h["X-Total-Count"] == "24", h["X-Total-Count"])
    expect(
        h["Link"] == '</admin/users?page=2&per_page=10>; rel="next", </admin/users?page=3&per_page=10>; rel="last"',
        h["Link"],
    )
    expect(body["aud"] == "authenticated", body)


def create():
    resp = admin.create_user({"email": "Conformance@Example.com", "email_confirm": True})
    user = resp.user
    expect(user.email == "conformance@example.com", user.email)
    expect(user.email_confirmed_at is not None, "not confirmed")
    expect(user.identities and user.identities[0].provider == "email", user.identities)
    state["id"] = user.id


def create_duplicate_is_422_email_exists():
    try:
        admin.create_user({"email": "CONFORMANCE@example.com"})
    except AuthApiError as e:
        expect(e.status == 422 and e.code == "email_exists", (e.status, e.code))
    else:
        raise AssertionError("a duplicate was created")


def get_by_id():
    user = admin.get_user_by_id(state["id"]).user
    expect(user.id == state["id"], user.id)
    expect(user.identities and user.identities[0].identity_data["email"] == "conformance@example.com", user.identities)
    expect(user.banned_until is None, user.banned_until)


def ban_and_unban():
    user = admin.update_user_by_id(state["id"], {"ban_duration": "876000h"}).user
    until = datetime.fromisoformat(user.banned_until.replace("Z", "+00:00"))
    expect(until.year >= 2120, until)
    again = admin.get_user_by_id(state["id"]).user
    expect(again.banned_until is not None, "ban not stored")
    expect(until > datetime.now(timezone.utc), until)
    user = admin.update_user_by_id(state["id"], {"ban_duration": "none"}).user
    expect(user.banned_until is None, user.banned_until)


def bad_ban_duration_is_400():
    try:
        admin.update_user_by_id(state["id"], {"ban_duration": "100y"})
    except AuthApiError as e:
        expect(e.status == 400 and e.code == "validation_failed", (e.status, e.code))
        expect('unknown unit "y"' in e.message, e.message)
    else:
        raise AssertionError("100y was accepted")


def unknown_user_is_404_user_not_found():
    try:
        admin.get_user_by_id("00000000-0000-4000-8000-000000000000")
    except AuthApiError as e:
        expect(e.status == 404 and e.code == "user_not_found", (e.status, e.code))
    else:
        raise AssertionError("found a user that does not exist")


def delete():
    admin.delete_user(state["id"])
    status, _, _ = http("GET", f"/auth/v1/admin/users/{state['id']}")
    expect(status == 404, status)


def rest(query, extra=None):
    headers = {"Accept-Profile": "activity"}
    headers.update(extra or {})
    return http("GET", f"/rest/v1/organization_people?{query}", headers)


def postgrest_count_and_206():
    status, h, body = rest("select=email&order=email.asc,id.asc&limit=10", {"Prefer": "count=exact"})
    expect(status == 206, status)
    expect(h["Content-Range"] == "0-9/27", h["Content-Range"])
    expect(len(body) == 10 and set(body[0]) == {"email"}, body[0])


def postgrest_416():
    status, _, body = rest("select=email&offset=100&limit=10", {"Prefer": "count=exact"})
    expect(status == 416, status)
    expect(body["code"] == "PGRST103", body)
    expect(body["details"] == "An offset of 100 was requested, but there are only 27 rows.", body)


def postgrest_no_count_is_200_star():
    status, h, _ = rest("select=email&limit=5")
    expect(status == 200 and h["Content-Range"] == "0-4/*", (status, h["Content-Range"]))


def postgrest_max_rows_cap():
    req = urllib.request.Request(
        URL + "/_sandbox/faults", data=json.dumps({"max_rows": 5}).encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=10).read()
    try:
        status, h, body = rest("select=email&limit=50")
        expect(status == 200 and len(body) == 5, (status, len(body)))
        expect(h["Content-Range"] == "0-4/*", h["Content-Range"])
    finally:
        urllib.request.urlopen(urllib.request.Request(URL + "/_sandbox/faults", method="DELETE"), timeout=10).read()


def postgrest_schema_not_exposed():
    status, _, body = http("GET", "/rest/v1/organization_people", {"Accept-Profile": "private"})
    expect(status == 406 and body["code"] == "PGRST106", (status, body))


for name, fn in [
    ("list_users across pages", list_across_pages),
    ("list_users without arguments", list_without_arguments),
    ("X-Total-Count and Link", pagination_headers),
    ("create_user", create),
    ("create_user duplicate: 422 email_exists", create_duplicate_is_422_email_exists),
    ("get_user_by_id", get_by_id),
    ("update_user_by_id ban 876000h, then none", ban_and_unban),
    ("update_user_by_id 100y: 400", bad_ban_duration_is_400),
    ("get_user_by_id unknown: 404 user_not_found", unknown_user_is_404_user_not_found),
    ("delete_user", delete),
    ("PostgREST count=exact: 206", postgrest_count_and_206),
    ("PostgREST offset past the end: 416", postgrest_416),
    ("PostgREST without count: 200 and */*", postgrest_no_count_is_200_star),
    ("PostgREST max-rows cap", postgrest_max_rows_cap),
    ("PostgREST schema not exposed: 406", postgrest_schema_not_exposed),
]:
    check(name, fn)

print(f"conformance: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
