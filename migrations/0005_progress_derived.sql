-- A project's stored progress is the JSON store's `progress` field: the legacy value until the project is first
-- rewritten, then always `round(completed / all tasks * 100)` (the JSON store recomputes it on every write of the
-- project, its members or its tasks). Keeping that number current in PostgreSQL meant locking the project row in
-- every task write until its commit, so all writes into one project committed one at a time. Instead, once a
-- project has been rewritten the flag is set (once; later writes leave the row alone) and readers compute the value
-- from the tasks they load anyway. `progress` keeps the legacy value for projects that were never rewritten.
alter table projects add column progress_derived boolean not null default false;
