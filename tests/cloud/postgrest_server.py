"""A local stand-in for Supabase's REST API: the PostgREST routes supabase-py 2.x calls, on a real Postgres.

Each request is authenticated like Supabase (an `apikey` header plus `Authorization: Bearer <jwt>`, HS256
with a `role` claim) and runs in its own transaction after `set local role <role>`, so the migrations'
grants and row-level security decide what a key may do, as they do on Supabase. Only the PostgREST
features promptly's store uses are served; anything else gets a PostgREST-style error, not a guess.
Values always travel as query parameters; identifiers go through psycopg.sql.Identifier.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import psycopg
from psycopg import sql

JWT_SECRET = "promptly-local-postgrest-test-secret-0123456789"
ROLES = ("anon", "authenticated", "service_role")
EXPOSED_SCHEMAS = ("public",)
_RESERVED = {"select", "order", "limit", "offset", "on_conflict", "columns"}
_OPS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "like": "like",
        "ilike": "ilike"}
_NAME = re.compile(r'[A-Za-z_][A-Za-z0-9_]*|"(?:[^"\\]|\\.)+"')
_ITEM = re.compile(r'(?:"(?:[^"\\]|\\.)*"|[^,])+')  # a comma-separated item; quotes may hold commas
Response = tuple[int, dict[str, str], str]  # status, extra headers, body text

# What a new Supabase project has before any user SQL: the API roles, and default privileges that
# grant every new table and function in `public` to them (row-level security does the rest).
SUPABASE_BOOTSTRAP = """
do $$ begin
    if not exists (select from pg_roles where rolname = 'anon') then
        create role anon nologin noinherit; end if;
    if not exists (select from pg_roles where rolname = 'authenticated') then
        create role authenticated nologin noinherit; end if;
    if not exists (select from pg_roles where rolname = 'service_role') then
        create role service_role nologin noinherit bypassrls; end if;
end $$;
grant usage on schema public to anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;
"""


def prepare_supabase_database(db_url: str) -> None:
    """Make a fresh database look like a new Supabase project (roles and default grants, no tables)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(SUPABASE_BOOTSTRAP.encode())


def mint_key(role: str, secret: str = JWT_SECRET, ttl_s: int = 3600) -> str:
    """An API key as Supabase issues them: an HS256 JWT whose `role` claim picks the database role."""
    now = int(time.time())
    claims = {"iss": "supabase-local", "role": role, "iat": now, "exp": now + ttl_s}
    return jwt.encode(claims, secret, algorithm="HS256")


class ApiError(Exception):
    """An error answered as PostgREST does: a status and a JSON body with code/message/details/hint."""

    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code
        self.body = {"code": code, "message": message, "details": details, "hint": hint}


def _pg_error(err: psycopg.Error, role: str) -> ApiError:
    """PostgREST's SQLSTATE -> HTTP status mapping, for the states a client can meet here."""
    code = err.sqlstate or "XX000"
    status = {"42501": 401 if role == "anon" else 403, "42P01": 404, "42883": 404, "23503": 409,
              "23505": 409, "25006": 405, "57014": 500}.get(code)
    if status is None:
        status = 503 if code[:2] in ("08", "53") else 500 if code[:2] in ("XX", "58", "55") else 400
    diag = err.diag
    return ApiError(status, code, diag.message_primary or str(err), diag.message_detail, diag.message_hint)


def _split(text: str) -> list[str]:
    return _ITEM.findall(text)


def _unquote(item: str) -> str:
    item = item.strip()
    if len(item) >= 2 and item[0] == item[-1] == '"':
        return re.sub(r"\\(.)", r"\1", item[1:-1])
    return item


def _ident(name: str) -> sql.Identifier:
    if not _NAME.fullmatch(name.strip()):
        raise ApiError(400, "PGRST100", f"unsupported column reference {name!r}",
                       hint="this local PostgREST reads plain column names only")
    return sql.Identifier(_unquote(name))


def _signature(row: tuple[Any, ...]) -> tuple[bool, set[str], dict[str, str]]:
    """(returns a set, required argument names, {input name: type}) from a pg_proc row."""
    retset, ndefaults, names, modes, types = row
    names = names or []
    inputs = [n for n, m in zip(names, modes or ["i"] * len(names), strict=True) if m in ("i", "b", "v")]
    if len(inputs) != len(types):  # unnamed arguments cannot be passed by name
        return retset, {"\0"}, {}
    return retset, set(inputs[: len(inputs) - ndefaults]), dict(zip(inputs, types, strict=True))


class PostgrestServer:
    """The HTTP server and a small connection pool; `with PostgrestServer(db_url) as s:` serves s.url."""

    def __init__(self, db_url: str, secret: str = JWT_SECRET) -> None:
        self.db_url, self.secret = db_url, secret
        self.anon_key, self.service_key = mint_key("anon", secret), mint_key("service_role", secret)
        self.requests: list[str] = []  # "METHOD /path?query" of every request, for tests to inspect
        self._pool: queue.SimpleQueue[psycopg.Connection[Any]] = queue.SimpleQueue()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.app = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> PostgrestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        while not self._pool.empty():
            self._pool.get_nowait().close()

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            conn = self._pool.get_nowait()
        except queue.Empty:
            conn = psycopg.connect(self.db_url)
        try:
            yield conn
        finally:
            if conn.broken or conn.closed:
                conn.close()
            else:
                self._pool.put(conn)

    def _claims(self, headers: Mapping[str, str]) -> dict[str, Any]:
        """Supabase's gateway wants a valid `apikey`; PostgREST takes the role from the bearer token."""
        apikey = headers.get("apikey")
        if not apikey:
            raise ApiError(401, "PGRST301", "No API key found in request", hint="Send an `apikey` header.")
        auth = headers.get("Authorization") or ""
        claims: dict[str, Any] = {}
        for token in (apikey, auth[7:] if auth.lower().startswith("bearer ") else apikey):
            try:
                claims = jwt.decode(token, self.secret, algorithms=["HS256"])
            except jwt.ExpiredSignatureError:
                raise ApiError(401, "PGRST303", "JWT expired") from None
            except jwt.PyJWTError as err:
                raise ApiError(401, "PGRST301", f"Invalid API key or JWT: {err}") from None
        if claims.get("role") not in ROLES:
            raise ApiError(401, "PGRST301", f"JWT role {claims.get('role')!r} is not an API role")
        return claims

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Response:
        """Answer one request inside one transaction, as the JWT's role."""
        self.requests.append(f"{method} {target}")
        url = urlsplit(target)
        if not url.path.startswith("/rest/v1/"):
            raise ApiError(404, "PGRST125", f"Invalid path specified in request URL: {url.path}")
        claims = self._claims(headers)
        reading = method in ("GET", "HEAD")
        schema = headers.get("Accept-Profile" if reading else "Content-Profile") or "public"
        if schema not in EXPOSED_SCHEMAS:
            raise ApiError(406, "PGRST106", f"The schema must be one of: {', '.join(EXPOSED_SCHEMAS)}")
        params = parse_qsl(url.query, keep_blank_values=True)
        prefs = (p.strip() for p in (headers.get("Prefer") or "").split(","))
        prefer = dict(p.partition("=")[::2] for p in prefs if p)
        try:
            body = json.loads(raw) if raw else None
        except ValueError as err:
            raise ApiError(400, "PGRST102", f"Empty or invalid json: {err}") from None
        name, role = url.path.removeprefix("/rest/v1/"), str(claims["role"])
        with self._connection() as conn:
            try:
                with conn.transaction():
                    if reading:
                        conn.execute("set transaction read only")
                    conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
                    conn.execute("select set_config('request.jwt.claims', %s, true)", (json.dumps(claims),))
                    if name.startswith("rpc/"):
                        return self._rpc(conn, method, schema, name[4:], params, body)
                    return self._table(conn, method, schema, name, params, prefer, body)
            except psycopg.Error as err:
                raise _pg_error(err, role) from None

    # -- tables -----------------------------------------------------------------------------------
    def _table(self, conn: psycopg.Connection[Any], method: str, schema: str, table: str,
               params: list[tuple[str, str]], prefer: dict[str, str], body: Any) -> Response:
        found = conn.execute("select from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                             "where n.nspname = %s and c.relname = %s and c.relkind in ('r','p','v','m','f')",
                             (schema, table)).fetchone()
        if found is None:
            raise ApiError(404, "PGRST205",
                           f"Could not find the table '{schema}.{table}' in the schema cache")
        tbl, args = sql.Identifier(schema, table), dict(params)
        where, values = self._where(params)
        cols = sql.SQL(", ").join(sql.SQL("*") if c.strip() == "*" else _ident(c)
                                  for c in _split(args.get("select") or "*"))
        out = sql.SQL("select coalesce(json_agg(t), '[]'::json)::text, count(*) from (select {} from {}) t")
        if method in ("GET", "HEAD"):
            offset, limit = int(args.get("offset") or 0), args.get("limit")
            order = sql.SQL("")
            if args.get("order"):
                order = sql.SQL(" order by ") + sql.SQL(", ").join(map(self._order, _split(args["order"])))
            page = sql.SQL("(select {} from {} where {}{} limit %s offset %s) p").format(cols, tbl, where,
                                                                                          order)
            row = conn.execute(out.format(sql.SQL("*"), page),
                               [*values, None if limit is None else int(limit), offset]).fetchone()
            text, n = row or ("[]", 0)
            total = None
            if prefer.get("count"):
                counted = conn.execute(sql.SQL("select count(*) from {} where {}").format(tbl, where), values)
                total = int(next(iter(counted))[0])
            span = f"{offset}-{offset + n - 1}" if n else "*"
            extra = {"Content-Range": f"{span}/{'*' if total is None else total}"}
            status = 206 if total is not None and offset + n < total else 200
            return status, extra, ("" if method == "HEAD" else text)
        if method == "POST":
            rows = body if isinstance(body, list) else [body]
            if not rows or not all(isinstance(r, dict) for r in rows):
                raise ApiError(400, "PGRST102", "The body must be a JSON object or an array of objects")
            names = [_unquote(c) for c in _split(args["columns"])] if "columns" in args else list(rows[0])
            conflict = sql.SQL("")
            if (resolution := prefer.get("resolution")) in ("merge-duplicates", "ignore-duplicates"):
                target = [_unquote(c) for c in _split(args.get("on_conflict", ""))]
                action = sql.SQL("do nothing") if resolution == "ignore-duplicates" else (
                    sql.SQL("do update set ") + sql.SQL(", ").join(
                        sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in names))
                conflict = sql.SQL(" on conflict ({}) {}").format(
                    sql.SQL(", ").join(map(sql.Identifier, target or self._primary_key(conn, tbl))), action)
            insert = sql.SQL("insert into {tbl} ({cols}) select {cols} from "
                             "jsonb_populate_recordset(null::{tbl}, %s){conflict}").format(
                tbl=tbl, cols=sql.SQL(", ").join(map(sql.Identifier, names)), conflict=conflict)
            if prefer.get("return") != "representation":
                # Like PostgREST: no RETURNING without return=representation, so a role that may insert
                # but not read (RLS) can still write.
                n_written = conn.execute(insert, [json.dumps(rows)]).rowcount
                count = n_written if prefer.get("count") else "*"
                return 201, {"Content-Range": f"*/{count}"}, ""
            write = sql.SQL("with w as (") + insert + sql.SQL(" returning *) ")
            row = conn.execute(write + out.format(cols, sql.Identifier("w")), [json.dumps(rows)]).fetchone()
        elif method == "DELETE":
            write = sql.SQL("with w as (delete from {} where {} returning *) ").format(tbl, where)
            row = conn.execute(write + out.format(cols, sql.Identifier("w")), values).fetchone()
        else:
            raise ApiError(405, "PGRST117", f"Unsupported HTTP method: {method} (not in this test server)")
        text, n = row or ("[]", 0)
        extra = {"Content-Range": f"*/{n if prefer.get('count') else '*'}"}
        if prefer.get("return") == "representation":
            return (201 if method == "POST" else 200), extra, text
        return (201 if method == "POST" else 204), extra, ""

    @staticmethod
    def _where(params: list[tuple[str, str]]) -> tuple[sql.Composable, list[Any]]:
        """PostgREST's horizontal filters `col=[not.]op.value`: the operators in _OPS, `in` and `is`."""
        clauses: list[sql.Composable] = []
        values: list[Any] = []
        for key, raw in params:
            if key in _RESERVED:
                continue
            op, _, arg = raw.removeprefix("not.").partition(".")
            col = _ident(key)
            if op == "in" and arg.startswith("(") and arg.endswith(")"):
                items = [_unquote(v) for v in _split(arg[1:-1])]
                marks = sql.SQL(", ").join([sql.Placeholder()] * len(items))
                clause = sql.SQL("{} in ({})").format(col, marks) if items else sql.SQL("false")
                values += items
            elif op == "is" and arg in ("null", "true", "false", "unknown"):
                clause = sql.SQL("{} is {}").format(col, sql.SQL(arg))
            elif op in _OPS:
                clause = sql.SQL("{} {} %s").format(col, sql.SQL(_OPS[op]))
                values.append(arg)
            else:
                raise ApiError(400, "PGRST100", f'"failed to parse filter ({raw})" (not served here)')
            clauses.append(sql.SQL("not ({})").format(clause) if raw.startswith("not.") else clause)
        return (sql.SQL(" and ").join(clauses) if clauses else sql.SQL("true")), values

    @staticmethod
    def _order(term: str) -> sql.Composable:
        column, *mods = term.strip().split(".")
        if any(m not in ("asc", "desc", "nullsfirst", "nullslast") for m in mods):
            raise ApiError(400, "PGRST100", f'"failed to parse order ({term})"')
        words = " ".join({"nullsfirst": "nulls first", "nullslast": "nulls last"}.get(m, m) for m in mods)
        return sql.SQL("{} {}").format(_ident(column), sql.SQL(words))

    @staticmethod
    def _primary_key(conn: psycopg.Connection[Any], tbl: sql.Identifier) -> list[str]:
        rows = conn.execute(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey) where i.indrelid = %s::regclass and i.indisprimary",
            (tbl.as_string(conn),)).fetchall()
        return [r[0] for r in rows]

    # -- functions --------------------------------------------------------------------------------
    def _rpc(self, conn: psycopg.Connection[Any], method: str, schema: str, fn: str,
             params: list[tuple[str, str]], body: Any) -> Response:
        """Call fn(name => value, ...) as PostgREST does, casting each argument through jsonb_to_record."""
        if method in ("GET", "HEAD"):
            args: dict[str, Any] = {k: v for k, v in params if k not in _RESERVED}
        elif method == "POST" and not params and isinstance(body, dict | None):
            args = body or {}
        else:
            raise ApiError(400, "PGRST100", "this test server calls functions by POST with a JSON object "
                           "(or by GET with arguments), without filters on the result")
        candidates = conn.execute(
            "select p.proretset, p.pronargdefaults, p.proargnames, p.proargmodes::text[], "
            "array(select format_type(t, null) from unnest(p.proargtypes::oid[]) with ordinality u(t, i) "
            "order by i) from pg_proc p join pg_namespace n on n.oid = p.pronamespace "
            "where n.nspname = %s and p.proname = %s", (schema, fn)).fetchall()
        found = next((s for s in map(_signature, candidates) if s[1] <= set(args) <= set(s[2])), None)
        if found is None:
            raise ApiError(404, "PGRST202", f"Could not find the function {schema}.{fn}"
                           f"({', '.join(sorted(args))}) in the schema cache")
        retset, _, inputs = found
        given = [n for n in inputs if n in args]
        call = sql.SQL("{}({})").format(sql.Identifier(schema, fn), sql.SQL(", ").join(
            sql.SQL("{0} => x.{0}").format(sql.Identifier(n)) for n in given))
        record = sql.SQL(", ").join(sql.SQL("{} {}").format(sql.Identifier(n), sql.SQL(inputs[n]))
                                    for n in given)
        source = sql.SQL(" from jsonb_to_record(%s) as x({})").format(record) if given else sql.SQL("")
        if retset:
            start = source + sql.SQL(" cross join lateral ") if given else sql.SQL(" from ")
            query = sql.SQL("select coalesce(json_agg(f), '[]'::json)::text from (select r.*{}{} r) f")
            query = query.format(start, call)
        else:
            query = sql.SQL("select to_json({})::text{}").format(call, source)
        row = conn.execute(query, [json.dumps(args)] if given else []).fetchone()
        text = row[0] if row and row[0] is not None else "null"
        return 200, {}, ("" if method == "HEAD" else text)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects
    disable_nagle_algorithm = True  # no delayed-ACK stall between the headers and the body

    def _serve(self) -> None:
        app: PostgrestServer = self.server.app  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            status, extra, text = app.handle(self.command, self.path, self.headers, raw)  # type: ignore[arg-type]
        except ApiError as err:
            status, text = err.status, json.dumps(err.body)
            extra = {"Proxy-Status": f"PostgREST; error={err.code}"}
            if status == 401:
                extra["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        except Exception as err:  # a bug here must reach the client as an error, not a hang
            status, extra, text = 500, {}, json.dumps({"code": "XX000", "message": repr(err)})
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        for key, value in extra.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_DELETE = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read PostgrestServer.requests instead."""
