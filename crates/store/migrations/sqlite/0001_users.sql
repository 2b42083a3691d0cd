-- Schema 1: users, permissions (Codenvy's shape), sessions and API tokens.
-- Times are milliseconds since the Unix epoch, UTC.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created       BIGINT NOT NULL
);

-- instance_id is '' for domains without instances (system), so it can be in the key.
-- actions is a comma-separated list.
CREATE TABLE permissions (
    user_id     TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    domain_id   TEXT NOT NULL,
    instance_id TEXT NOT NULL DEFAULT '',
    actions     TEXT NOT NULL,
    PRIMARY KEY (user_id, domain_id, instance_id)
);
CREATE INDEX permissions_by_domain ON permissions(domain_id, instance_id);

-- Sessions and personal API tokens; only the SHA-256 digest of the secret is kept.
CREATE TABLE credentials (
    id        TEXT PRIMARY KEY,
    user_id   TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    name      TEXT NOT NULL,
    digest    TEXT NOT NULL UNIQUE,
    created   BIGINT NOT NULL,
    expires   BIGINT,
    last_used BIGINT
);
CREATE INDEX credentials_by_user ON credentials(user_id, kind);
