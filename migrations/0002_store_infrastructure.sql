-- Flux Studio schema, part 2: the tables of the store machinery (data-model.md §9.3): realtime fan-out, the
-- dual-postgres outbox and its tombstones, the persisted store mode, live instances, migrate checkpoints and
-- validation reports.

-- Realtime envelopes too large for a NOTIFY payload (realtime.md §8); rows older than 5 minutes are deleted.
create table realtime_events (
    id         bigserial primary key,
    payload    jsonb not null,
    created_at timestamptz not null default now()
);
create index idx_realtime_events_created_at on realtime_events (created_at);

-- dual-postgres outbox (store-modes.md §2): replayed in `seq` order per `ordering_key`.
create table store_outbox (
    seq             bigserial primary key,
    epoch           bigint not null,
    ordering_key    text not null,
    entity          text not null,
    entity_id       text not null,
    op              text not null check (op in ('upsert', 'delete')),
    payload         jsonb null,
    created_at      timestamptz not null default now(),
    attempts        int not null default 0,
    next_attempt_at timestamptz not null default now(),
    last_error      text null,
    done_at         timestamptz null
);
create index idx_store_outbox_pending on store_outbox (ordering_key, seq) where done_at is null;

-- Deletes seen during the dual modes, so that a backfill never resurrects them.
create table store_tombstones (
    entity     text not null,
    entity_id  text not null,
    deleted_at timestamptz not null default now(),
    primary key (entity, entity_id)
);

-- The persisted store mode: a single row, enforced by the constant key.
create table store_state (
    singleton       boolean primary key default true check (singleton),
    mode            text not null check (mode in ('json', 'dual-json', 'dual-postgres', 'postgres')),
    epoch           bigint not null,
    changed_at      timestamptz not null,
    changed_by      text not null,
    validated_at    timestamptz null,
    validated_epoch bigint null
);

-- Live instances for the switch protocol (store-modes.md §5).
create table store_instances (
    instance_id  text primary key,
    mode         text not null,
    epoch        bigint not null,
    heartbeat_at timestamptz not null
);

-- migrate checkpoints: one row per entity of a run, updated in the same transaction as each batch.
create table migration_runs (
    run_id      text not null,
    entity      text not null,
    last_id     text null,
    rows_done   bigint not null default 0,
    rows_failed bigint not null default 0,
    started_at  timestamptz not null default now(),
    finished_at timestamptz null,
    primary key (run_id, entity)
);

create table validation_runs (
    run_id      text primary key,
    started_at  timestamptz not null,
    finished_at timestamptz null,
    mode        text not null,
    result      jsonb not null default '{}',
    passed      boolean not null default false
);
