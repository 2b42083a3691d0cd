-- Schema 4: resource limits. A workspace that is starting, running or stopping holds the
-- memory it was admitted with (ram_mb; counted only in those statuses). An administrator's
-- override of a user's default limits is kept whole as JSON: [{"type", "amount", "unit"}],
-- amounts in each type's default unit.
ALTER TABLE workspaces ADD COLUMN ram_mb BIGINT NOT NULL DEFAULT 0;
CREATE INDEX workspaces_by_owner_status ON workspaces(owner_id, status);
CREATE TABLE resource_overrides (
    user_id   TEXT PRIMARY KEY REFERENCES users(id),
    resources TEXT NOT NULL,
    updated   BIGINT NOT NULL
);
