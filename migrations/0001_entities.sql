-- Flux Studio schema, part 1: the entity tables (data-model.md §9.1, §9.3) and the 21 seed indexes (§9.2).
--
-- Rules that apply throughout:
-- * every timestamp is timestamptz; `updated_at` is set by the application, never by a trigger, so that a
--   migrated or replayed row keeps its source value;
-- * every entity table has `extra jsonb` holding the unknown JSON keys of the legacy record verbatim;
-- * enum columns carry CHECK constraints with the canonical vocabulary of data-model.md §8 (project member roles
--   also accept the three legacy spellings, which are kept verbatim);
-- * text lengths are enforced by the API validator, never by varchar limits (legacy defect 15);
-- * the 21 seed indexes have exactly the names of §9.2: `fluxstudio db check` looks them up by name. Primary-key
--   indexes are not among them; further indexes on the six seed tables live in later migrations.

create table users (
    id            uuid primary key,
    email         text not null,
    name          text not null,
    password_hash text null,
    user_type     text not null check (user_type in ('client', 'designer', 'admin')),
    oauth_provider text null,
    oauth_id      text null,
    avatar_url    text null,
    is_active     boolean not null default true,
    created_at    timestamptz not null,
    updated_at    timestamptz null,
    extra         jsonb not null default '{}' check (jsonb_typeof(extra) = 'object'),
    -- byte-exact uniqueness (index 1); case-insensitive duplicates are refused by the application, because legacy
    -- data may already hold some and login must still find the exact address first (auth.md §4.2)
    constraint users_email_key unique (email)
);
create index idx_users_oauth on users (oauth_provider, oauth_id);
create index idx_users_created_at on users (created_at desc);

-- Teams and organizations share one table, as they share teams.json (data-model.md §4).
create table teams (
    id          uuid primary key,
    kind        text not null check (kind in ('team', 'organization')),
    name        text not null,
    description text null,
    created_by  uuid not null references users (id),
    created_at  timestamptz not null,
    updated_at  timestamptz null,
    invites     jsonb not null default '[]' check (jsonb_typeof(invites) = 'array'),
    extra       jsonb not null default '{}' check (jsonb_typeof(extra) = 'object')
);
create index idx_teams_created_by on teams (created_by);

create table team_members (
    team_id    uuid not null references teams (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    role       text not null check (role in ('owner', 'admin', 'member')),
    joined_at  timestamptz not null,
    position   int not null,
    -- the raw legacy reference when the member was stored by e-mail (as in project_members), so that the team
    -- reads back with the same `userId` in every mode
    member_ref text null,
    -- unknown keys of the member object
    extra      jsonb not null default '{}' check (jsonb_typeof(extra) = 'object'),
    constraint team_members_team_user_key unique (team_id, user_id)
);
create index idx_team_members_user on team_members (user_id);

-- The legacy server lists every team a user belongs to as an organization.
create view organizations as
    select id, kind, name, description, created_by, created_at, updated_at, invites, extra
    from teams;

create table projects (
    id               uuid primary key,
    name             text not null,
    description      text null,
    team_id          uuid null references teams (id) on delete set null,
    organization_id  uuid null references teams (id) on delete set null,
    manager_id       uuid not null references users (id),
    status           text not null check (status in ('planning', 'in_progress', 'on_hold', 'completed', 'cancelled')),
    priority         text not null check (priority in ('low', 'medium', 'high', 'urgent')),
    start_date       timestamptz null,
    due_date         timestamptz null,
    progress         smallint not null default 0 check (progress between 0 and 100),
    channel_metadata jsonb null,
    files            jsonb not null default '[]' check (jsonb_typeof(files) = 'array'),
    created_at       timestamptz not null,
    updated_at       timestamptz not null,
    extra            jsonb not null default '{}' check (jsonb_typeof(extra) = 'object')
);
create index idx_projects_manager on projects (manager_id);
create index idx_projects_team on projects (team_id);
create index idx_projects_organization on projects (organization_id);
create index idx_projects_status on projects (status);
create index idx_projects_created_at on projects (created_at desc);

-- No surrogate id: the key is (project_id, user_id). `position` keeps the legacy array order.
create table project_members (
    project_id uuid not null references projects (id) on delete cascade,
    user_id    uuid not null references users (id) on delete cascade,
    role       text not null
        check (role in ('owner', 'admin', 'member', 'viewer', 'manager', 'contributor', 'reviewer')),
    joined_at  timestamptz not null,
    position   int not null,
    -- the raw legacy reference when the member was stored by e-mail (data-model.md §7)
    member_ref text null,
    -- unknown keys of the member object
    extra      jsonb not null default '{}' check (jsonb_typeof(extra) = 'object'),
    constraint project_members_project_user_key unique (project_id, user_id)
);
create index idx_project_members_user on project_members (user_id);
create index idx_project_members_role on project_members (role);

create table tasks (
    id           uuid primary key,
    project_id   uuid not null references projects (id) on delete cascade,
    position     int not null,
    title        text not null,
    description  text null,
    status       text not null check (status in ('todo', 'in_progress', 'review', 'blocked', 'completed')),
    priority     text not null check (priority in ('low', 'medium', 'high', 'critical')),
    assigned_to  uuid null references users (id) on delete set null,
    due_date     timestamptz null,
    created_by   uuid not null references users (id),
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    completed_at timestamptz null,
    tags         text[] null,
    attachments  jsonb null,
    extra        jsonb not null default '{}' check (jsonb_typeof(extra) = 'object')
);
create index idx_tasks_project_position on tasks (project_id, position);
create index idx_tasks_project_status on tasks (project_id, status);
create index idx_tasks_assigned_to on tasks (assigned_to);
create index idx_tasks_due_date on tasks (due_date);

create table milestones (
    id              uuid primary key,
    project_id      uuid not null references projects (id) on delete cascade,
    -- the record's `orderIndex` when it had one, else its array position
    order_index     int not null,
    -- whether the record carried an explicit `orderIndex` (rollback shape), so that it is written back only then
    order_index_set boolean not null default false,
    title           text not null,
    description     text null,
    due_date        timestamptz null,
    status          text not null check (status in ('pending', 'in_progress', 'completed', 'cancelled')),
    progress        smallint null check (progress between 0 and 100),
    created_by      uuid null references users (id),
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    completed_at    timestamptz null,
    extra           jsonb not null default '{}' check (jsonb_typeof(extra) = 'object')
);
create index idx_milestones_project_order on milestones (project_id, order_index);
create index idx_milestones_due_date on milestones (due_date);

create table activities (
    id              uuid primary key,
    project_id      uuid null references projects (id) on delete cascade,
    organization_id uuid null references teams (id) on delete cascade,
    type            text not null,
    user_id         uuid null references users (id) on delete set null,
    user_name       text null,
    user_email      text null,
    user_avatar     text null,
    entity_type     text null check (entity_type in ('task', 'milestone', 'project', 'comment', 'file', 'member', 'team')),
    entity_id       uuid null,
    -- the raw `entityId` when it is not a UUID (a member stored by e-mail or a legacy id); `entity_id` then holds
    -- the storage id it resolves to, when known
    entity_ref      text null,
    entity_title    text null,
    action          text not null,
    metadata        jsonb not null default '{}',
    "timestamp"     timestamptz not null,
    -- insertion order: activities written in the same millisecond list newest-first in the order they were
    -- written, exactly as the JSON store's append-only activity list does
    seq             bigint generated always as identity,
    extra           jsonb not null default '{}' check (jsonb_typeof(extra) = 'object')
);
create index idx_activities_project_timestamp on activities (project_id, "timestamp" desc);
create index idx_activities_user on activities (user_id);
create index idx_activities_entity on activities (entity_type, entity_id);
create index idx_activities_organization on activities (organization_id);

create table files (
    id            uuid primary key,
    original_name text not null,
    filename      text not null,
    storage_path  text null,
    url           text not null,
    size          bigint not null,
    mimetype      text not null,
    uploaded_by   uuid not null references users (id),
    uploaded_at   timestamptz not null,
    tags          text[] not null default '{}',
    description   text not null default '',
    is_public     boolean not null default false,
    updated_at    timestamptz null,
    project_id    uuid null references projects (id) on delete set null,
    extra         jsonb not null default '{}' check (jsonb_typeof(extra) = 'object'),
    constraint files_filename_key unique (filename)
);
create index idx_files_uploaded_by on files (uploaded_by);

-- Non-UUID public ids and their deterministic UUIDv5 storage ids (data-model.md §7).
create table legacy_ids (
    entity     text not null,
    legacy_id  text not null,
    id         uuid not null,
    created_at timestamptz not null default now(),
    primary key (entity, legacy_id),
    constraint legacy_ids_id_key unique (id)
);
