-- Schema 6: the audit log and the license history.
-- audit_events is a hash chain: each row stores the SHA-256 of the one before (prev_hash,
-- hex) and its own (hash), over the fields exactly as stored (core::audit_log::event_hash).
-- seq is assigned as the last seq + 1 inside the guarded transaction of the change the
-- event records. actor_id is '' for drydock itself (actor_name 'system'). changes is a JSON
-- object {field: {"before", "after"}} or other detail; never a password, token or secret.
-- Times in epoch milliseconds.
CREATE TABLE audit_events (
    seq         BIGINT PRIMARY KEY,
    time        BIGINT NOT NULL,
    actor_id    TEXT NOT NULL,
    actor_name  TEXT NOT NULL,
    client      TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    target_name TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    changes     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events(time);
CREATE INDEX audit_events_by_action ON audit_events(action);
CREATE INDEX audit_events_by_actor ON audit_events(actor_name);
-- Every change of the license, oldest first, never pruned (the audit report prints it).
-- kind: fairSourceAccepted, paidAdded, paidExpired, paidRemoved.
CREATE TABLE license_history (
    seq        BIGINT PRIMARY KEY,
    time       BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    license_id TEXT NOT NULL,
    by_email   TEXT NOT NULL
);
