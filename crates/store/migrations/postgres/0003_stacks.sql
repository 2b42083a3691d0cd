-- Schema 3: stacks, the ready workspace templates administrators offer. The stack is kept
-- whole as JSON in Codenvy's shape (name, description, workspaceConfig, and fields drydock
-- does not use); its name is unique.
CREATE TABLE stacks (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    stack   TEXT NOT NULL,
    created BIGINT NOT NULL
);
