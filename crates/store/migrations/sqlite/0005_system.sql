-- Schema 5: the instance's own state and its backup history.
-- system_state holds named values that survive restarts, as JSON text (e.g. `maintenance`:
-- {"message", "since", "by"} while maintenance mode is on; no row when it is off).
CREATE TABLE system_state (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL,
    updated BIGINT NOT NULL
);
-- One row a backup, written when it starts ("running") and again when it ends ("ok" or
-- "failed"). trigger: manual, schedule, api or upgrade. Times in epoch milliseconds.
CREATE TABLE backup_runs (
    id        TEXT PRIMARY KEY,
    started   BIGINT NOT NULL,
    finished  BIGINT,
    "trigger" TEXT NOT NULL,
    file      TEXT,
    size      BIGINT,
    result    TEXT NOT NULL,
    message   TEXT
);
CREATE INDEX backup_runs_by_started ON backup_runs(started);
