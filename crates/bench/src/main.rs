//! `drydock-bench`: drydock's benchmark programs, one subcommand each. Every figure is
//! a ratio against a baseline measured in the same run; see BENCHMARKS.md. These are
//! programs, never timed tests: they report speed and fail only when a run is invalid
//! (a server that did not start, requests that did not succeed), never because it is slow.

mod api;
mod audit_overhead;
mod audit_report;
mod backup;
mod drydock_api;
mod http;
mod instance;
mod limits_race;
mod standby;
mod users_page;
mod util;
mod workspace_start;

use std::process::ExitCode;

const USAGE: &str = "\
usage: drydock-bench <benchmark> [--help]

benchmarks:
  api    authenticated GET /api/user against GET /api/health, under wrk on loopback,
         on SQLite and (when TEST_POSTGRES_URL is set) on PostgreSQL
  users-page
         server time of one page of the dashboard's user list (GET /admin/users) with
         10,000 users in the store, against the same rows fetched with raw SQL, on SQLite
         and (when TEST_POSTGRES_URL is set) on PostgreSQL
  workspace-start
         time from POST /api/workspace/{id}/runtime to RUNNING for a one-machine workspace
         (busybox test image), one at a time and 20 at once, against creating and starting
         the same container with raw Engine API calls
  backup backup and restore of an instance with 1 GiB of project files in 20 workspaces,
         against `tar | zstd` and `zstd -d | tar x` of the same files
  limits-race
         100 starts at once by one user against a runtime limit of 10: exactly the limit
         admitted, on SQLite and (when TEST_POSTGRES_URL is set) on PostgreSQL; answer
         times against as many reads at once
  audit-overhead
         user creation and deletion through the API with the audit log on, against the
         same with audit.enabled = false in the same run, on SQLite and (when
         TEST_POSTGRES_URL is set) on PostgreSQL
  audit-report
         GET /api/audit (text and JSON) with 10,000 users and 50,000 workspaces in the
         store, against the same rows read with raw SQL, on SQLite and (when
         TEST_POSTGRES_URL is set) on PostgreSQL
  standby
         a standby following a primary: RPO and RTO of failovers (kill, promote) against
         the nightly backup and a restore of it, on SQLite and (when TEST_POSTGRES_URL is
         set) PostgreSQL; bytes of an incremental sync of 1 GiB of project files with one
         file changed; the database snapshot at 10,000 users against VACUUM INTO / pg_dump

Run them with `bash scripts/bench.sh <benchmark>`, which installs and builds what they need.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, rest) = match args.split_first() {
        Some((name, rest)) => (name.as_str(), rest),
        None => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match name {
        "api" => api::run(rest),
        "users-page" => users_page::run(rest),
        "workspace-start" => workspace_start::run(rest),
        "limits-race" => limits_race::run(rest),
        "backup" => backup::run(rest),
        "audit-overhead" => audit_overhead::run(rest),
        "audit-report" => audit_report::run(rest),
        "standby" => standby::run(rest),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        other => {
            eprintln!("drydock-bench: unknown benchmark '{other}'\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("drydock-bench {name}: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
