//! Versioned migrations, embedded in the binary, one list per backend. A shipped
//! migration is never edited: a change is a new file with the next number.

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS_SQLITE: &[Migration] = &[
    Migration { version: 1, name: "users", sql: include_str!("../migrations/sqlite/0001_users.sql") },
    Migration { version: 2, name: "workspaces", sql: include_str!("../migrations/sqlite/0002_workspaces.sql") },
    Migration { version: 3, name: "stacks", sql: include_str!("../migrations/sqlite/0003_stacks.sql") },
    Migration { version: 4, name: "limits", sql: include_str!("../migrations/sqlite/0004_limits.sql") },
    Migration { version: 5, name: "system", sql: include_str!("../migrations/sqlite/0005_system.sql") },
    Migration { version: 6, name: "audit", sql: include_str!("../migrations/sqlite/0006_audit.sql") },
];

pub const MIGRATIONS_POSTGRES: &[Migration] = &[
    Migration { version: 1, name: "users", sql: include_str!("../migrations/postgres/0001_users.sql") },
    Migration { version: 2, name: "workspaces", sql: include_str!("../migrations/postgres/0002_workspaces.sql") },
    Migration { version: 3, name: "stacks", sql: include_str!("../migrations/postgres/0003_stacks.sql") },
    Migration { version: 4, name: "limits", sql: include_str!("../migrations/postgres/0004_limits.sql") },
    Migration { version: 5, name: "system", sql: include_str!("../migrations/postgres/0005_system.sql") },
    Migration { version: 6, name: "audit", sql: include_str!("../migrations/postgres/0006_audit.sql") },
];
