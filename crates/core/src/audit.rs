//! The audit report of `GET /api/audit`, byte for byte as Codenvy's audit service wrote it:
//! the licensing history, then `--- CURRENT STATE ---` with the users and, for each, the
//! workspaces they own or hold permissions in. This module renders a report from plain
//! data; gathering it (users, workspaces, permissions, license events) is the service's.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Workspace actions in the order the report prints them; others follow, by name.
pub const ACTION_ORDER: [&str; 6] = ["read", "use", "run", "configure", "setPermissions", "delete"];

/// One change of the instance's license, as the history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LicenseChange {
    /// The Fair Source license was accepted (when the instance was initialized).
    FairSourceAccepted,
    /// An administrator installed a paid license.
    PaidAdded { by_email: String, license_id: String },
    /// A paid license expired (after its grace period); Fair Source applies again.
    PaidExpired { license_id: String },
    /// An administrator removed a paid license; Fair Source applies again.
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub time: DateTime<Utc>,
    pub change: LicenseChange,
}

/// The paid license in force, if one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaidLicenseState {
    pub seats: i64,
    pub expires: DateTime<Utc>,
}

/// A workspace in a user's part of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportWorkspace {
    pub name: String,
    pub is_owner: bool,
    /// The user's actions on it (an owner's included), in [`ACTION_ORDER`].
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportUser {
    pub email: String,
    pub owned: usize,
    /// Workspaces the user owns or holds any action on: owned first, then by name.
    pub workspaces: Vec<ReportWorkspace>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
        let mut out = String::new();
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
            for workspace in &user.workspaces {
                let _ = writeln!(
                    out,
                    "   └ {}, is owner: {}, permissions: [{}]",
                    workspace.name,
                    workspace.is_owner,
                    workspace.permissions.join(", ")
                );
            }
        }
        out
    }

    /// `report_<dd-MM-yyyy_HH:mm:ss>.txt`, the name the report is downloaded as.
    pub fn file_name(at: DateTime<Utc>) -> String {
        format!("report_{}.txt", at.format("%d-%m-%Y_%H:%M:%S"))
    }
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
        let paid = |id: &str, time: &str| HistoryEntry {
            time: at(time),
            change: LicenseChange::PaidAdded { by_email: "admin@example.com".into(), license_id: id.into() },
        };
        let report = AuditReport {
            history: vec![
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
            ],
            users_count: 1,
            license: None,
            users: vec![ReportUser::new("admin@example.com".into(), vec![owned("solo")])],
        };
        assert_eq!(report.render_text(), include_str!("../tests/golden/audit-expired-removed.txt"));
    }

    #[test]
    fn file_name_and_action_order() {
        assert_eq!(AuditReport::file_name(at("2026-11-30T09:05:07Z")), "report_30-11-2026_09:05:07.txt");
        let mut actions: Vec<String> = ["custom", "delete", "read", "read"].iter().map(|s| s.to_string()).collect();
        order_actions(&mut actions);
        assert_eq!(actions, ["read", "delete", "custom"]);
    }
}
