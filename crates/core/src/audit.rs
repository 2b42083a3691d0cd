//! The audit report of `GET /api/audit`, byte for byte as Codenvy's audit service wrote it:
//! the licensing history, then `--- CURRENT STATE ---` with the users and, for each, the
//! workspaces they own or hold permissions in. [`AuditReport`] renders a report from plain
//! data; [`AuditReports`] is the service that gathers it (users, workspaces, permissions,
//! license events), for administrators, one report at a time.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{MANAGE_SYSTEM, Principal};
use crate::store::Store;
use crate::workspace::WORKSPACE_ACTIONS;

/// Workspace actions in the order the report prints them; others follow, by name.
pub const ACTION_ORDER: [&str; 6] = ["read", "use", "run", "configure", "setPermissions", "delete"];

/// One change of the instance's license, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LicenseChange {
    /// The Fair Source license was accepted (when the instance was initialized).
    FairSourceAccepted,
    /// An administrator installed a paid license.
    #[serde(rename_all = "camelCase")]
    PaidAdded { by_email: String, license_id: String },
    /// A paid license expired (after its grace period); Fair Source applies again.
    #[serde(rename_all = "camelCase")]
    PaidExpired { license_id: String },
    /// An administrator removed a paid license; Fair Source applies again.
    #[serde(rename_all = "camelCase")]
    PaidRemoved { license_id: String },
}

impl LicenseChange {
    /// The history line's text, as Codenvy wrote it (an expiry or removal and the return to
    /// Fair Source are one line).
    pub fn describe(&self) -> String {
        const BACK: &str = "System returned to previously accepted Fair Source license.";
        match self {
            LicenseChange::FairSourceAccepted => "Fair Source license was accepted.".to_string(),
            LicenseChange::PaidAdded { by_email, license_id } => format!("{by_email} added paid license {license_id}."),
            LicenseChange::PaidExpired { license_id } => format!("Paid license {license_id} expired. {BACK}"),
            LicenseChange::PaidRemoved { license_id } => format!("Paid license {license_id} removed. {BACK}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub change: LicenseChange,
}

/// The paid license in force, if one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaidLicenseState {
    pub seats: i64,
    pub expires: DateTime<Utc>,
}

/// A workspace in a user's part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportWorkspace {
    pub name: String,
    pub is_owner: bool,
    /// The user's actions on it (an owner's included), in [`ACTION_ORDER`].
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportUser {
    pub email: String,
    pub owned: usize,
    /// Workspaces the user owns or holds any action on: owned first, then by name.
    pub workspaces: Vec<ReportWorkspace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditReport {
    /// Every license change, oldest first (Codenvy kept only the latest of each kind).
    pub history: Vec<HistoryEntry>,
    pub users_count: usize,
    pub license: Option<PaidLicenseState>,
    pub users: Vec<ReportUser>,
}

impl ReportUser {
    /// A user's part, with the workspaces put in the report's order: owned first, then by
    /// name; the actions in [`ACTION_ORDER`].
    pub fn new(email: String, mut workspaces: Vec<ReportWorkspace>) -> ReportUser {
        for workspace in &mut workspaces {
            order_actions(&mut workspace.permissions);
        }
        workspaces.sort_by(|a, b| b.is_owner.cmp(&a.is_owner).then_with(|| a.name.cmp(&b.name)));
        let owned = workspaces.iter().filter(|w| w.is_owner).count();
        ReportUser { email, owned, workspaces }
    }
}

/// Sorts actions into the report's order; actions it does not know follow, by name.
pub fn order_actions(actions: &mut Vec<String>) {
    let rank = |a: &str| ACTION_ORDER.iter().position(|known| *known == a).unwrap_or(ACTION_ORDER.len());
    actions.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
    actions.dedup();
}

/// "1 workspace", "0 workspaces", "2 workspaces".
fn workspaces(n: usize) -> String {
    if n == 1 { "1 workspace".to_string() } else { format!("{n} workspaces") }
}

impl AuditReport {
    /// The report as the text file Codenvy's `/api/audit` sent.
    pub fn render_text(&self) -> String {
        let lines = self.history.len() + self.users.iter().map(|u| 1 + u.workspaces.len()).sum::<usize>();
        let mut out = String::with_capacity(128 + lines * 96);
        for entry in &self.history {
            let _ = writeln!(out, "{}: {}", entry.time.format("%Y %b %d - %H:%M:%S"), entry.change.describe());
        }
        out.push('\n');
        out.push_str("--- CURRENT STATE ---\n");
        let _ = writeln!(out, "Number of users: {}", self.users_count);
        if let Some(license) = &self.license {
            let _ = writeln!(out, "Number of licensed seats: {}", license.seats);
            let _ = writeln!(out, "License expiration: {}", license.expires.format("%d %B %Y"));
        }
        for user in &self.users {
            let _ = writeln!(
                out,
                "{} is owner of {} and has permissions in {}",
                user.email,
                workspaces(user.owned),
                workspaces(user.workspaces.len())
            );
            // "   └ <name>, is owner: <bool>, permissions: [<a>, <b>]", without a format per line.
            for workspace in &user.workspaces {
                out.push_str("   └ ");
                out.push_str(&workspace.name);
                out.push_str(if workspace.is_owner { ", is owner: true" } else { ", is owner: false" });
                out.push_str(", permissions: [");
                for (i, action) in workspace.permissions.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(action);
                }
                out.push_str("]\n");
            }
        }
        out
    }

    /// `report_<dd-MM-yyyy_HH:mm:ss>.txt`, the name the report is downloaded as.
    pub fn file_name(at: DateTime<Utc>) -> String {
        format!("report_{}.txt", at.format("%d-%m-%Y_%H:%M:%S"))
    }
}

/// A user as the report reads them from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUserRow {
    pub id: String,
    pub email: String,
}

/// A workspace with one permission on it, as the report reads them from the store; a
/// workspace nobody holds a permission on comes once, with `user_id` `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceAccess {
    pub workspace_id: String,
    pub name: String,
    pub owner_id: String,
    pub user_id: Option<String>,
    pub actions: Vec<String>,
}

/// Everything the report's current state is made of, read in one snapshot of the store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportRows {
    /// Every user, in no particular order.
    pub users: Vec<ReportUserRow>,
    /// Every workspace with every permission in the `workspace` domain on it, in no
    /// particular order. System permissions are not read: they never appear in the report.
    pub access: Vec<WorkspaceAccess>,
}

impl AuditReport {
    /// Puts a report together: users in e-mail order, each with the workspaces they own
    /// (every action, whatever is stored: the owner always holds them all) and those they
    /// hold any action on; a permission with no action is no access and is left out, as is
    /// one of a user or workspace the snapshot does not have.
    pub fn assemble(history: Vec<HistoryEntry>, license: Option<PaidLicenseState>, rows: ReportRows) -> AuditReport {
        let ReportRows { mut users, access } = rows;
        users.sort_by(|a, b| a.email.cmp(&b.email).then_with(|| a.id.cmp(&b.id)));
        let index: HashMap<&str, usize> = users.iter().enumerate().map(|(i, u)| (u.id.as_str(), i)).collect();
        // (workspace id, its part) per user, in the users' order.
        let mut parts: Vec<Vec<(String, ReportWorkspace)>> = vec![Vec::new(); users.len()];
        let all = || WORKSPACE_ACTIONS.iter().map(|a| a.to_string()).collect::<Vec<_>>();

        // A workspace whose owner has no row of their own (the store writes one with every
        // workspace, so only an edited database lacks it) is theirs all the same.
        let with_owner_row: HashSet<&str> = access
            .iter()
            .filter(|row| row.user_id.as_deref() == Some(row.owner_id.as_str()))
            .map(|row| row.workspace_id.as_str())
            .collect();
        let mut listed = HashSet::new();
        for row in &access {
            let id = row.workspace_id.as_str();
            if !with_owner_row.contains(id)
                && listed.insert(id)
                && let Some(&owner) = index.get(row.owner_id.as_str())
            {
                let workspace = ReportWorkspace { name: row.name.clone(), is_owner: true, permissions: all() };
                parts[owner].push((row.workspace_id.clone(), workspace));
            }
        }
        drop((with_owner_row, listed));

        for row in access {
            let Some(&holder) = row.user_id.as_deref().and_then(|user| index.get(user)) else { continue };
            let is_owner = row.user_id.as_deref() == Some(row.owner_id.as_str());
            let mut permissions = row.actions;
            if is_owner {
                for action in WORKSPACE_ACTIONS {
                    if !permissions.iter().any(|a| a == action) {
                        permissions.push(action.to_string());
                    }
                }
            } else if permissions.is_empty() {
                continue;
            }
            parts[holder].push((row.workspace_id, ReportWorkspace { name: row.name, is_owner, permissions }));
        }
        drop(index);

        let users_count = users.len();
        let users = users
            .into_iter()
            .zip(parts)
            .map(|(user, mut mine)| {
                // Two workspaces of one name (of different owners) keep one order everywhere.
                mine.sort_by(|a, b| a.0.cmp(&b.0));
                ReportUser::new(user.email, mine.into_iter().map(|(_, w)| w).collect())
            })
            .collect();
        AuditReport { history, users_count, license, users }
    }
}

/// What a second administrator is told while a report is being built (Codenvy's words).
pub const REPORT_IN_PROGRESS: &str = "Generating report is already in progress";
/// The test-only pause point while a report is being built (`DRYDOCK_PAUSE_POINT`).
pub const REPORT_PAUSE_POINT: &str = "audit-report";

/// A report and the moment it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedReport {
    pub at: DateTime<Utc>,
    pub report: AuditReport,
}

impl GeneratedReport {
    /// `report_<dd-MM-yyyy_HH:mm:ss>.txt`, after the moment it was made.
    pub fn file_name(&self) -> String {
        AuditReport::file_name(self.at)
    }
}

/// The audit report service: `manageSystem` only, one report at a time.
pub struct AuditReports {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    building: Arc<AtomicBool>,
}

/// Frees the one-at-a-time slot when the report is done, however it ends (a request
/// dropped midway included).
struct Building(Arc<AtomicBool>);

impl Drop for Building {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl AuditReports {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        AuditReports { store, clock, building: Arc::default() }
    }

    /// Builds the report (needs `manageSystem`); `paid` is the paid license in force, if
    /// any. While one is being built, another is refused (409, [`REPORT_IN_PROGRESS`]).
    pub async fn generate(&self, caller: &Principal, paid: Option<PaidLicenseState>) -> Result<GeneratedReport> {
        Ok(self.build(caller, paid, |_| Ok(())).await?.0)
    }

    /// Builds the report like [`AuditReports::generate`] and renders it in `format`, ready
    /// to send: Codenvy's text file, or the same content as JSON.
    pub async fn file(
        &self,
        caller: &Principal,
        paid: Option<PaidLicenseState>,
        format: ReportFormat,
    ) -> Result<ReportFile> {
        let (generated, body) = self
            .build(caller, paid, move |report| match format {
                ReportFormat::Text => Ok(report.render_text()),
                ReportFormat::Json => serde_json::to_string(report).map_err(Error::internal),
            })
            .await?;
        Ok(ReportFile { file_name: generated.file_name(), at: generated.at, format, body })
    }

    /// Reads what the report is made of, then assembles and renders it on a blocking thread
    /// (sorting, grouping and formatting tens of thousands of rows is CPU work the async
    /// workers should not do).
    async fn build<T: Send + 'static>(
        &self,
        caller: &Principal,
        paid: Option<PaidLicenseState>,
        render: impl FnOnce(&AuditReport) -> Result<T> + Send + 'static,
    ) -> Result<(GeneratedReport, T)> {
        caller.require_system(MANAGE_SYSTEM)?;
        if self.building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(Error::Conflict(REPORT_IN_PROGRESS.to_string()));
        }
        let _building = Building(self.building.clone());
        let at = self.clock.now();
        let started = std::time::Instant::now();
        let history = self.store.license_history().await?;
        let rows = self.store.report_rows().await?;
        let read = started.elapsed();
        crate::testing_hooks::pause_point_async(REPORT_PAUSE_POINT).await;
        let (report, rendered, built) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let report = AuditReport::assemble(history, paid, rows);
            let rendered = render(&report);
            (report, rendered, started.elapsed())
        })
        .await
        .map_err(Error::internal)?;
        let rendered = rendered?;
        tracing::info!(
            by = %caller.user.name,
            users = report.users_count,
            workspace_lines = report.users.iter().map(|u| u.workspaces.len()).sum::<usize>(),
            read_ms = read.as_millis() as u64,
            build_ms = built.as_millis() as u64,
            "audit report generated"
        );
        Ok((GeneratedReport { at, report }, rendered))
    }
}

/// How a report is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// Codenvy's text file (`report_<dd-MM-yyyy_HH:mm:ss>.txt`).
    #[default]
    Text,
    /// The same content as JSON ([`AuditReport`]).
    Json,
}

impl ReportFormat {
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Text => "text/plain; charset=utf-8",
            ReportFormat::Json => "application/json",
        }
    }
}

/// A report rendered, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportFile {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// `report_<dd-MM-yyyy_HH:mm:ss>.txt`, the name a text report is downloaded as.
    pub file_name: String,
    pub format: ReportFormat,
    pub body: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    fn all() -> Vec<String> {
        ["delete", "configure", "read", "setPermissions", "run", "use"].iter().map(|s| s.to_string()).collect()
    }

    fn owned(name: &str) -> ReportWorkspace {
        ReportWorkspace { name: name.into(), is_owner: true, permissions: all() }
    }

    fn shared(name: &str, actions: &[&str]) -> ReportWorkspace {
        ReportWorkspace {
            name: name.into(),
            is_owner: false,
            permissions: actions.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn accepted() -> HistoryEntry {
        HistoryEntry { time: at("2026-01-09T17:40:39Z"), change: LicenseChange::FairSourceAccepted }
    }

    #[test]
    fn fair_source_with_no_workspaces() {
        let report = AuditReport {
            history: vec![accepted()],
            users_count: 2,
            license: None,
            users: vec![
                ReportUser::new("admin@example.com".into(), vec![]),
                ReportUser::new("alice@example.com".into(), vec![]),
            ],
        };
        assert_eq!(report.render_text(), include_str!("../tests/golden/audit-fair-source.txt"));
    }

    #[test]
    fn paid_license_with_owned_and_shared_workspaces() {
        let report = AuditReport {
            history: vec![
                accepted(),
                HistoryEntry {
                    time: at("2026-02-01T08:05:09Z"),
                    change: LicenseChange::PaidAdded {
                        by_email: "admin@example.com".into(),
                        license_id: "1460727747815".into(),
                    },
                },
            ],
            users_count: 3,
            license: Some(PaidLicenseState { seats: 50, expires: at("2027-01-05T00:00:00Z") }),
            users: vec![
                ReportUser::new("admin@example.com".into(), vec![owned("tools")]),
                ReportUser::new(
                    "alice@example.com".into(),
                    vec![shared("common", &["use", "read"]), owned("beta"), owned("alpha")],
                ),
                ReportUser::new("bob@example.com".into(), vec![shared("alpha", &["run", "read", "use"])]),
            ],
        };
        assert_eq!(report.render_text(), include_str!("../tests/golden/audit-paid.txt"));
    }

    #[test]
    fn expiry_and_removal_are_one_line_each_and_every_event_is_kept() {
        let report = AuditReport {
            history: history_of_two_licenses(),
            users_count: 1,
            license: None,
            users: vec![ReportUser::new("admin@example.com".into(), vec![owned("solo")])],
        };
        assert_eq!(report.render_text(), include_str!("../tests/golden/audit-expired-removed.txt"));
    }

    fn user(id: &str, email: &str) -> ReportUserRow {
        ReportUserRow { id: id.into(), email: email.into() }
    }

    /// Workspace `id` named `name` of `owner`, and `holder`'s actions on it (comma-separated,
    /// as stored), or no permission at all.
    fn access(id: &str, name: &str, owner: &str, holder: Option<(&str, &str)>) -> WorkspaceAccess {
        WorkspaceAccess {
            workspace_id: id.into(),
            name: name.into(),
            owner_id: owner.into(),
            user_id: holder.map(|(user, _)| user.to_string()),
            actions: holder
                .map(|(_, actions)| actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect())
                .unwrap_or_default(),
        }
    }

    const OWNER: &str = "read,use,run,configure,setPermissions,delete";

    /// Shared workspaces with partial permissions, as the store gives them: users and rows
    /// in no order, actions in no order, an owner without a row of their own, a permission
    /// with no action, a permission of a user the snapshot does not have, two workspaces of
    /// one name.
    fn shared_rows() -> ReportRows {
        ReportRows {
            users: vec![
                user("u3", "zed@example.com"),
                user("u5", "carol@example.com"),
                user("u1", "admin@example.com"),
                user("u4", "bob@example.com"),
                user("u2", "alice@example.com"),
            ],
            access: vec![
                access("w5", "shared", "u3", Some(("u4", "delete,read,setPermissions"))),
                access("w1", "tools", "u1", Some(("u1", OWNER))),
                access("w1", "tools", "u1", Some(("u2", "use,read"))),
                access("w1", "tools", "u1", Some(("ghost", "read"))),
                access("w2", "beta", "u2", Some(("u5", ""))),
                access("w2", "beta", "u2", Some(("u4", "run,read,use"))),
                access("w2", "beta", "u2", Some(("u2", OWNER))),
                access("w3", "alpha", "u2", Some(("u2", "delete,use,configure,read,run,setPermissions"))),
                access("w3", "alpha", "u2", Some(("u5", "read"))),
                access("w4", "alpha", "u4", Some(("u5", "use"))),
                access("w5", "shared", "u3", Some(("u3", OWNER))),
                access("w5", "shared", "u3", Some(("u2", "read"))),
            ],
        }
    }

    #[test]
    fn shared_workspaces_with_partial_permissions_from_store_rows() {
        let report = AuditReport::assemble(vec![accepted()], None, shared_rows());
        assert_eq!(report.render_text(), include_str!("../tests/golden/audit-assembled.txt"));
        // The same rows in another order make the same report.
        let mut reversed = shared_rows();
        reversed.users.reverse();
        reversed.access.reverse();
        assert_eq!(AuditReport::assemble(vec![accepted()], None, reversed), report);
    }

    #[test]
    fn zero_one_and_several_workspaces_from_store_rows() {
        let users = vec![user("u2", "alice@example.com"), user("u1", "admin@example.com")];
        let none = AuditReport::assemble(vec![accepted()], None, ReportRows { users: users.clone(), access: vec![] });
        assert_eq!(none.render_text(), include_str!("../tests/golden/audit-fair-source.txt"));

        let one = AuditReport::assemble(
            history_of_two_licenses(),
            None,
            ReportRows {
                users: vec![user("u1", "admin@example.com")],
                // A workspace nobody holds a row on: its owner still owns it, with every action.
                access: vec![access("w1", "solo", "u1", None)],
            },
        );
        assert_eq!(one.render_text(), include_str!("../tests/golden/audit-expired-removed.txt"));

        let several = AuditReport::assemble(
            vec![
                accepted(),
                HistoryEntry {
                    time: at("2026-02-01T08:05:09Z"),
                    change: LicenseChange::PaidAdded {
                        by_email: "admin@example.com".into(),
                        license_id: "1460727747815".into(),
                    },
                },
            ],
            Some(PaidLicenseState { seats: 50, expires: at("2027-01-05T00:00:00Z") }),
            ReportRows {
                users: vec![
                    user("b", "bob@example.com"),
                    user("a", "alice@example.com"),
                    user("x", "admin@example.com"),
                ],
                access: vec![
                    access("w-common", "common", "x", Some(("a", "use,read"))),
                    access("w-common", "common", "x", Some(("x", OWNER))),
                    access("w-tools", "tools", "x", Some(("x", OWNER))),
                    access("w-alpha", "alpha", "a", Some(("a", OWNER))),
                    access("w-alpha", "alpha", "a", Some(("b", "run,read,use"))),
                    access("w-beta", "beta", "a", Some(("a", OWNER))),
                ],
            },
        );
        // As the paid golden file, but the administrator also owns "common".
        let expected = include_str!("../tests/golden/audit-paid.txt").replace(
            "admin@example.com is owner of 1 workspace and has permissions in 1 workspace\n",
            "admin@example.com is owner of 2 workspaces and has permissions in 2 workspaces\n   \
             └ common, is owner: true, permissions: [read, use, run, configure, setPermissions, delete]\n",
        );
        assert_eq!(several.render_text(), expected);
    }

    fn history_of_two_licenses() -> Vec<HistoryEntry> {
        let paid = |id: &str, time: &str| HistoryEntry {
            time: at(time),
            change: LicenseChange::PaidAdded { by_email: "admin@example.com".into(), license_id: id.into() },
        };
        vec![
            accepted(),
            paid("L-1", "2026-02-01T08:05:09Z"),
            HistoryEntry {
                time: at("2026-03-01T00:00:01Z"),
                change: LicenseChange::PaidExpired { license_id: "L-1".into() },
            },
            paid("L-2", "2026-03-02T10:00:00Z"),
            HistoryEntry {
                time: at("2026-04-15T23:59:59Z"),
                change: LicenseChange::PaidRemoved { license_id: "L-2".into() },
            },
        ]
    }

    #[test]
    fn json_is_the_same_content_in_camel_case() {
        let report = AuditReport::assemble(history_of_two_licenses(), None, shared_rows());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["usersCount"], 5);
        assert_eq!(json["license"], serde_json::Value::Null);
        assert_eq!(json["history"][0]["change"], serde_json::json!({"kind": "fairSourceAccepted"}));
        assert_eq!(
            json["history"][1]["change"],
            serde_json::json!({"kind": "paidAdded", "byEmail": "admin@example.com", "licenseId": "L-1"})
        );
        assert_eq!(json["history"][2]["change"], serde_json::json!({"kind": "paidExpired", "licenseId": "L-1"}));
        assert_eq!(json["users"][1]["email"], "alice@example.com");
        assert_eq!(json["users"][1]["owned"], 2);
        assert_eq!(
            json["users"][1]["workspaces"][3],
            serde_json::json!({"name": "tools", "isOwner": false, "permissions": ["read", "use"]})
        );
    }

    #[test]
    fn file_name_and_action_order() {
        assert_eq!(AuditReport::file_name(at("2026-11-30T09:05:07Z")), "report_30-11-2026_09:05:07.txt");
        let mut actions: Vec<String> = ["custom", "delete", "read", "read"].iter().map(|s| s.to_string()).collect();
        order_actions(&mut actions);
        assert_eq!(actions, ["read", "delete", "custom"]);
    }
}
