-- Lookup indexes beyond the 21 seed indexes (data-model.md §9.2 allows them only in later migrations;
-- `fluxstudio db check` reports them separately).

-- Login falls back to a unique case-insensitive e-mail match when the exact address is not found (auth.md §4.2),
-- and signup refuses case-insensitive duplicates: both look users up by lower(email).
create index idx_users_email_lower on users (lower(email));

-- Google sign-in looks users up by their Google `sub` alone; idx_users_oauth leads with oauth_provider, which the
-- legacy data never sets.
create index idx_users_oauth_id on users (oauth_id);

