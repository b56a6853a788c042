"""The PostgreSQL store's tables, and their creation and migration on open.

Every object lives in one schema (``perdure`` by default). ``schema_version``
holds one row: the layout version. Opening a store takes a transaction-level
advisory lock keyed on the schema name, reads the version, and creates or
migrates the tables to `SCHEMA_VERSION`; a store written by a newer perdure is
refused (`SchemaVersionError`). Text columns that are ordered on use the "C"
collation, so runs and timers order by code point exactly like the other logs,
whatever the database's locale.

The ``append`` function does one whole append server-side, in the caller's
statement (one round trip, atomic): it advances the run's ``next_seq`` only
where it still equals the expected seq, claims the idempotency key, inserts the
events and updates the timers. It returns ``ok``, ``conflict <actual>`` or
``not-started`` (nothing written), and raises SQLSTATE ``PD001`` for an
idempotency key held by another run (the statement is rolled back).

``append_many`` (layout 6) runs several appends, of different runs, in one
statement and so one transaction and one synced commit (group commit): each is
fenced and checked on its own, a conflicting, fenced or key-refused one changes
nothing and does not fail the others, and each answer is one returned row
(``key-taken`` answers carry the holder's run id and digest).
A run's ``settled`` notice can ride along, sent at the commit.
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 6

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

KEY_TAKEN_SQLSTATE = "PD001"
_URL = re.compile(r"postgres(ql)?://", re.IGNORECASE)


def is_postgres_url(spec: object) -> bool:
    """True for a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(spec, str) and _URL.match(spec) is not None


def redact(dsn: str) -> str:
    """The URL without its password, for messages and reprs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", dsn)


def check_schema_name(schema: str) -> str:
    """The schema name, if it is a plain lower-case SQL identifier (no quoting needed)."""
    if not isinstance(schema, str) or not _IDENTIFIER.fullmatch(schema):
        raise ValueError(
            f"schema {schema!r} must be a lower-case SQL identifier "
            "(letters, digits and _, not starting with a digit, at most 63 characters)"
        )
    return schema


def create_statements(s: str) -> list[str]:
    """The DDL of layout version 1 in schema `s` (already checked); later layouts are
    reached through `migration_statements`."""
    return [
        f"""CREATE TABLE {s}.runs (
            run_id text COLLATE "C" PRIMARY KEY,
            target text NOT NULL,
            kind text NOT NULL,
            status text NOT NULL,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            next_seq bigint NOT NULL,
            idempotency_key text
        )""",
        f"CREATE INDEX runs_by_created ON {s}.runs (created_at, run_id)",
        f"CREATE INDEX runs_by_status ON {s}.runs (status, created_at, run_id)",
        f"""CREATE TABLE {s}.events (
            run_id text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            body bytea NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        f"""CREATE TABLE {s}.idempotency (
            key text PRIMARY KEY,
            run_id text NOT NULL,
            input_digest text NOT NULL
        )""",
        f"""CREATE TABLE {s}.timers (
            run_id text COLLATE "C" NOT NULL,
            timer_id text COLLATE "C" NOT NULL,
            due_at double precision NOT NULL,
            PRIMARY KEY (run_id, timer_id)
        )""",
        f"CREATE INDEX timers_by_due ON {s}.timers (due_at, run_id, timer_id)",
        _append_v1(s),
    ]


def _append_tail(s: str) -> str:
    """What every layout's ``append`` does once the run's row accepted the batch: claim
    the idempotency key, insert the events, update the timers."""
    return f"""            IF p_key IS NOT NULL THEN
                INSERT INTO {s}.idempotency AS i (key, run_id, input_digest)
                VALUES (p_key, p_run, p_digest)
                ON CONFLICT (key) DO UPDATE SET input_digest = excluded.input_digest
                WHERE i.run_id = excluded.run_id;
                IF NOT FOUND THEN
                    SELECT run_id, input_digest INTO holder FROM {s}.idempotency
                    WHERE key = p_key;
                    RAISE EXCEPTION USING ERRCODE = '{KEY_TAKEN_SQLSTATE}',
                        MESSAGE = holder.run_id, DETAIL = holder.input_digest;
                END IF;
            END IF;
            INSERT INTO {s}.events (run_id, seq, body)
            SELECT p_run, p_expected + t.n - 1, t.body
            FROM unnest(p_bodies) WITH ORDINALITY AS t(body, n);
            IF cardinality(p_timers_removed) > 0 THEN
                DELETE FROM {s}.timers
                WHERE run_id = p_run AND timer_id = ANY(p_timers_removed);
            END IF;
            IF cardinality(p_timer_ids) > 0 THEN
                INSERT INTO {s}.timers (run_id, timer_id, due_at)
                SELECT p_run, t.id, t.due FROM unnest(p_timer_ids, p_timer_dues) AS t(id, due);
            END IF;
"""


def _append_v1(s: str) -> str:
    return f"""CREATE FUNCTION {s}.append(
            p_run text, p_expected bigint, p_status text,
            p_started boolean, p_first_started boolean,
            p_target text, p_kind text, p_key text, p_digest text,
            p_created double precision, p_updated double precision,
            p_bodies bytea[], p_timers_removed text[], p_timer_ids text[],
            p_timer_dues double precision[]
        ) RETURNS text LANGUAGE plpgsql AS $fn$
        DECLARE
            actual bigint;
            holder record;
        BEGIN
            IF p_expected = 0 THEN
                IF NOT p_first_started THEN
                    SELECT next_seq INTO actual FROM {s}.runs WHERE run_id = p_run;
                    IF FOUND THEN RETURN 'conflict ' || actual; END IF;
                    RETURN 'not-started';
                END IF;
                INSERT INTO {s}.runs AS r (run_id, target, kind, status, created_at,
                                           updated_at, next_seq, idempotency_key)
                VALUES (p_run, p_target, p_kind, coalesce(p_status, 'running'), p_created,
                        p_updated, cardinality(p_bodies), p_key)
                ON CONFLICT (run_id) DO NOTHING;
                IF NOT FOUND THEN
                    SELECT next_seq INTO actual FROM {s}.runs WHERE run_id = p_run;
                    RETURN 'conflict ' || coalesce(actual, 0);
                END IF;
            ELSE
                UPDATE {s}.runs SET
                    next_seq = p_expected + cardinality(p_bodies),
                    status = coalesce(p_status, CASE WHEN p_started THEN 'running' ELSE status END),
                    updated_at = p_updated,
                    target = CASE WHEN p_started THEN p_target ELSE target END,
                    kind = CASE WHEN p_started THEN p_kind ELSE kind END,
                    idempotency_key = CASE WHEN p_started THEN p_key ELSE idempotency_key END
                WHERE run_id = p_run AND next_seq = p_expected;
                IF NOT FOUND THEN
                    SELECT next_seq INTO actual FROM {s}.runs WHERE run_id = p_run;
                    RETURN 'conflict ' || coalesce(actual, 0);
                END IF;
            END IF;
{_append_tail(s)}            RETURN 'ok';
        END
        $fn$"""


def _append_v2(s: str) -> str:
    """Layout 2's append: v1's, fenced by the run's lease (owner, epoch, lease_until)."""
    return f"""CREATE FUNCTION {s}.append(
            p_run text, p_expected bigint, p_status text,
            p_started boolean, p_first_started boolean,
            p_target text, p_kind text, p_key text, p_digest text,
            p_created double precision, p_updated double precision,
            p_bodies bytea[], p_timers_removed text[], p_timer_ids text[],
            p_timer_dues double precision[],
            p_owner text, p_epoch bigint, p_ttl double precision
        ) RETURNS text LANGUAGE plpgsql AS $fn$
        DECLARE
            actual bigint;
            holder record;
            cur record;
            new_epoch bigint;
        BEGIN
            IF p_expected = 0 THEN
                IF NOT p_first_started THEN
                    SELECT next_seq INTO actual FROM {s}.runs WHERE run_id = p_run;
                    IF FOUND THEN RETURN 'conflict ' || actual; END IF;
                    RETURN 'not-started';
                END IF;
                INSERT INTO {s}.runs AS r (run_id, target, kind, status, created_at,
                                           updated_at, next_seq, idempotency_key,
                                           owner, epoch, lease_until)
                VALUES (p_run, p_target, p_kind, coalesce(p_status, 'running'), p_created,
                        p_updated, cardinality(p_bodies), p_key,
                        p_owner, 1, now() + p_ttl * interval '1 second')
                ON CONFLICT (run_id) DO NOTHING;
                IF NOT FOUND THEN
                    SELECT next_seq INTO actual FROM {s}.runs WHERE run_id = p_run;
                    RETURN 'conflict ' || coalesce(actual, 0);
                END IF;
                new_epoch := 1;
            ELSE
                -- The fence: only the lease holder at its epoch, before the lease ends, may
                -- append; an appender that never held the run takes a free or expired lease.
                UPDATE {s}.runs SET
                    next_seq = p_expected + cardinality(p_bodies),
                    status = coalesce(p_status, CASE WHEN p_started THEN 'running' ELSE status END),
                    updated_at = p_updated,
                    target = CASE WHEN p_started THEN p_target ELSE target END,
                    kind = CASE WHEN p_started THEN p_kind ELSE kind END,
                    idempotency_key = CASE WHEN p_started THEN p_key ELSE idempotency_key END,
                    owner = p_owner,
                    epoch = CASE WHEN p_epoch IS NULL THEN epoch + 1 ELSE epoch END,
                    lease_until = CASE WHEN p_epoch IS NULL
                        THEN now() + p_ttl * interval '1 second' ELSE lease_until END
                WHERE run_id = p_run AND next_seq = p_expected
                    AND CASE WHEN p_epoch IS NULL
                        THEN owner IS NULL OR lease_until < now()
                        ELSE owner = p_owner AND epoch = p_epoch AND lease_until > now() END
                RETURNING epoch INTO new_epoch;
                IF NOT FOUND THEN
                    SELECT next_seq, owner, epoch, coalesce(lease_until > now(), false) AS live
                    INTO cur FROM {s}.runs WHERE run_id = p_run;
                    IF NOT FOUND THEN RETURN 'conflict 0'; END IF;
                    -- Not the holder (any more): fenced, whatever the seq says.
                    IF (p_epoch IS NOT NULL AND (cur.owner IS DISTINCT FROM p_owner
                            OR cur.epoch <> p_epoch OR NOT cur.live))
                        OR (p_epoch IS NULL AND cur.owner IS NOT NULL AND cur.live
                            AND cur.owner <> p_owner) THEN
                        RETURN 'fenced';
                    END IF;
                    RETURN 'conflict ' || cur.next_seq;
                END IF;
            END IF;
{_append_tail(s)}            RETURN 'ok ' || new_epoch;
        END
        $fn$"""


_V1_APPEND_SIGNATURE = (
    "text, bigint, text, boolean, boolean, text, text, text, text, double precision, "
    "double precision, bytea[], text[], text[], double precision[]"
)


def migration_statements(s: str, version: int) -> list[str]:
    """The DDL that takes a store in schema `s` from layout `version - 1` to `version`."""
    if version == 1:
        return create_statements(s)
    if version == 2:  # leases: the run's owner, its epoch and when its lease ends
        return [
            f"ALTER TABLE {s}.runs ADD COLUMN owner text, "
            "ADD COLUMN epoch bigint NOT NULL DEFAULT 0, ADD COLUMN lease_until timestamptz",
            f"CREATE INDEX runs_by_owner ON {s}.runs (owner) WHERE owner IS NOT NULL",
            f"DROP FUNCTION {s}.append({_V1_APPEND_SIGNATURE})",
            _append_v2(s),
        ]
    if version == 3:  # messages to a run driven by another process (resume, cancel)
        return [
            f"""CREATE TABLE {s}.inbox (
            id bigserial PRIMARY KEY,
            run_id text COLLATE "C" NOT NULL,
            message jsonb NOT NULL)""",
            f"CREATE INDEX inbox_by_run ON {s}.inbox (run_id, id)",
        ]
    if version == 4:  # worker processes and the targets they serve ({name: kind})
        return [
            f"""CREATE TABLE {s}.workers (
            owner text PRIMARY KEY,
            targets jsonb NOT NULL,
            seen timestamptz NOT NULL)""",
        ]
    if version == 5:  # a message stays in the inbox, marked taken, until it is answered
        return [f"ALTER TABLE {s}.inbox ADD COLUMN taken_by text"]
    if version == 6:  # group commit: many runs' appends in one statement
        return [_append_many(s)]
    raise ValueError(f"no migration to layout version {version}")


def _append_many(s: str) -> str:
    """Layout 6: `append` for each of several batches, in one transaction. ``p_meta`` is
    a JSON array with one array per batch: run id, expected seq, status, started,
    first event is RunStarted, target, kind, key, digest, created, updated, how many
    bodies' hex, timers removed, timer ids set, their due times, lease epoch, notice
    channel (JSON: dumped and parsed in C, where 20 arrays cost Python a loop each; one
    big ``bytea[]`` sliced per batch cost the server time growing with its square). A
    batch with an idempotency key
    runs in a sub-transaction, so a key held by another run refuses that batch alone
    (``key-taken``, holder and digest on the next lines); the other answers are
    `append`'s. After an ``ok``, a notice on the batch's channel (if any) names the run,
    sent at the commit."""
    return f"""CREATE FUNCTION {s}.append_many(
            p_meta jsonb, p_owner text, p_ttl double precision
        ) RETURNS SETOF text LANGUAGE plpgsql AS $fn$
        DECLARE
            answer text;
            e jsonb;
            bodies bytea[];
            removed text[];
            timer_ids text[];
            dues double precision[];
            holder text;
            digest text;
        BEGIN
            FOR e IN SELECT value FROM jsonb_array_elements(p_meta) LOOP
                bodies := ARRAY(SELECT decode(jsonb_array_elements_text(e->11), 'hex'));
                removed := ARRAY(SELECT jsonb_array_elements_text(e->12));
                timer_ids := ARRAY(SELECT jsonb_array_elements_text(e->13));
                dues := ARRAY(SELECT jsonb_array_elements_text(e->14)::double precision);
                IF e->>7 IS NULL THEN
                    answer := {s}.append(e->>0, (e->>1)::bigint, e->>2, (e->>3)::boolean,
                        (e->>4)::boolean, e->>5, e->>6, NULL, e->>8,
                        (e->>9)::double precision, (e->>10)::double precision, bodies,
                        removed, timer_ids, dues, p_owner, (e->>15)::bigint, p_ttl);
                ELSE
                    BEGIN
                        answer := {s}.append(e->>0, (e->>1)::bigint, e->>2,
                            (e->>3)::boolean, (e->>4)::boolean, e->>5, e->>6, e->>7, e->>8,
                            (e->>9)::double precision, (e->>10)::double precision, bodies,
                            removed, timer_ids, dues, p_owner, (e->>15)::bigint, p_ttl);
                    EXCEPTION WHEN SQLSTATE '{KEY_TAKEN_SQLSTATE}' THEN
                        GET STACKED DIAGNOSTICS holder = MESSAGE_TEXT,
                            digest = PG_EXCEPTION_DETAIL;
                        answer := 'key-taken' || chr(10) || holder || chr(10) || digest;
                    END;
                END IF;
                IF e->>16 IS NOT NULL AND left(answer, 2) = 'ok' THEN
                    PERFORM pg_notify(e->>16, e->>0);
                END IF;
                RETURN NEXT answer;
            END LOOP;
        END
        $fn$"""
