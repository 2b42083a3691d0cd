-- Schema 2: workspaces. A workspace belongs to its owner (namespace) and has a name unique
-- for that owner. Its config is Codenvy's JSON, kept whole (fields drydock does not use
-- included); runtime (machines, servers) and attributes are JSON too. Who may do what with
-- a workspace is in permissions (domain 'workspace', instance_id = the workspace id).
CREATE TABLE workspaces (
    id         TEXT PRIMARY KEY,
    owner_id   TEXT NOT NULL REFERENCES users(id),
    name       TEXT NOT NULL,
    config     TEXT NOT NULL,
    status     TEXT NOT NULL,
    runtime    TEXT,
    attributes TEXT NOT NULL,
    created    BIGINT NOT NULL,
    updated    BIGINT NOT NULL,
    UNIQUE (owner_id, name)
);
CREATE INDEX workspaces_by_status ON workspaces(status);
