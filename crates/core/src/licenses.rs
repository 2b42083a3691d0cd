//! The license in force: Fair Source (with `license.free_seats` seats) or an installed paid
//! license (its seats), and the changes between them — installed and removed by an
//! administrator, expired by the license clock after the grace period. Every change is a
//! line of the license history and an audit event, written with the change in one
//! transaction. The installed license is kept in the store (`system_state` row `license`)
//! and in memory, where user creation reads its seats ([`SeatCap`]).
//!
//! A license problem never stops running work: users beyond the seats keep working and
//! workspaces keep running; only new users are refused.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::{HistoryEntry, LicenseChange, PaidLicenseState};
use crate::audit_log::{Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::config::LicenseConfig;
use crate::error::{Error, Result};
use crate::license::{self, LicenseError, LicenseTerms, SeatCap, Standing};
use crate::model::{MANAGE_SYSTEM, Principal};
use crate::store::Store;

/// The `system_state` name the installed paid license is stored under.
pub const LICENSE_KEY: &str = "license";
/// The name of the license that applies without a paid one.
pub const FAIR_SOURCE: &str = "Fair Source";

/// The installed license as stored: the document as installed (signature included, so it
/// is verified again at every start), when and by whom.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredLicense {
    document: String,
    installed: DateTime<Utc>,
    installed_by: String,
}

#[derive(Debug, Clone)]
struct Installed {
    terms: LicenseTerms,
    document: String,
    installed: DateTime<Utc>,
    installed_by: String,
    /// Why it does not apply although installed: its key is no longer trusted.
    untrusted: Option<String>,
}

#[derive(Debug, Clone)]
enum Current {
    FairSource,
    Paid(Installed),
    /// A stored license that cannot be read (the database was edited by hand): Fair Source
    /// applies until an administrator installs or removes one.
    Unreadable(String),
}

/// Which license applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LicenseKind {
    FairSource,
    Paid,
}

/// Where an installed paid license stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaidState {
    /// Before its expiry: it applies.
    Active,
    /// Expired, within the grace period (until `graceUntil`): it still applies.
    Grace,
    /// Past the grace period: Fair Source applies (the license clock records it within moments).
    Expired,
    /// Not signed by a key in `license.trusted_keys` (any more): Fair Source applies.
    Untrusted,
}

/// An installed paid license.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PaidLicense {
    pub id: String,
    pub licensee: String,
    pub seats: i64,
    pub issued: DateTime<Utc>,
    pub expires: DateTime<Utc>,
    pub state: PaidState,
    /// When Fair Source applies again if no renewed license is installed.
    pub grace_until: DateTime<Utc>,
    pub installed: DateTime<Utc>,
    /// The e-mail of the administrator who installed it.
    pub installed_by: String,
}

/// The license and its state, as `GET /api/license` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LicenseView {
    /// The license that applies: `FAIR_SOURCE` or `PAID`.
    pub kind: LicenseKind,
    /// The seats that apply: the paid license's (also during its grace period), otherwise
    /// `license.free_seats`; null: no cap.
    pub seats: Option<u64>,
    /// Users now (each takes a seat).
    pub users: u64,
    /// The Fair Source license's seats (`license.free_seats`); null: no cap.
    pub free_seats: Option<u64>,
    /// `license.grace_days`.
    pub grace_days: u32,
    /// The installed paid license, if there is one (it may not apply: see its `state`).
    pub paid: Option<PaidLicense>,
    pub is_legal: bool,
    pub issues: Vec<LegalityIssue>,
}

/// What is wrong with the instance's licensing, in Codenvy's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Legality {
    pub is_legal: bool,
    pub issues: Vec<LegalityIssue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LegalityIssue {
    pub status: IssueStatus,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IssueStatus {
    /// More users than the seats that apply (existing users keep working; none can be added).
    UserLicenseExceeded,
    /// The paid license expired and is in its grace period.
    LicenseExpired,
    /// The installed license is not signed by a trusted key (any more).
    LicenseUntrusted,
    /// The stored license cannot be read.
    LicenseInvalid,
}

pub struct Licenses {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    seats: Arc<SeatCap>,
    trusted: Vec<VerifyingKey>,
    free_seats: Option<u64>,
    grace_days: u32,
    current: RwLock<Current>,
    /// One change at a time, so the store and the memory agree (and an expiry is recorded once).
    changes: tokio::sync::Mutex<()>,
}

/// A time as the messages write it.
fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn seats_text(seats: Option<u64>) -> String {
    seats.map_or_else(|| "no seat cap".to_string(), |n| format!("{n} seats"))
}

fn paid_seats(terms: &LicenseTerms) -> u64 {
    u64::try_from(terms.seats).unwrap_or(0)
}

/// The 400 for a license document that cannot be accepted, naming what is wrong.
fn refused(e: LicenseError) -> Error {
    let field = match &e {
        LicenseError::Invalid { field, .. } => field,
        _ => "license",
    };
    Error::invalid(field, e.to_string())
}

impl Licenses {
    /// Keys in `license.trusted_keys` were checked when the config loaded; one that still
    /// does not parse is left out (and said so).
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, seats: Arc<SeatCap>, config: &LicenseConfig) -> Self {
        let trusted = config
            .trusted_keys
            .iter()
            .filter_map(|k| {
                license::parse_public_key(k)
                    .map_err(|e| tracing::warn!(error = %e, "license.trusted_keys: a key is left out"))
                    .ok()
            })
            .collect();
        Licenses {
            store,
            clock,
            seats,
            trusted,
            free_seats: u64::try_from(config.free_seats).ok(),
            grace_days: config.grace_days,
            current: RwLock::new(Current::FairSource),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    fn current(&self) -> Current {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sets the license in memory and the seats that follow from it.
    fn set(&self, current: Current) {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = current;
        self.seats.set(self.seats_of(&guard, self.clock.now()));
    }

    /// The paid license that applies at `now`: trusted, and not past its grace period.
    fn in_force<'a>(&self, current: &'a Current, now: DateTime<Utc>) -> Option<&'a Installed> {
        match current {
            Current::Paid(i) if i.untrusted.is_none() && self.standing(&i.terms, now) != Standing::Lapsed => Some(i),
            _ => None,
        }
    }

    fn standing(&self, terms: &LicenseTerms, now: DateTime<Utc>) -> Standing {
        license::standing(terms, now, self.grace_days)
    }

    fn seats_of(&self, current: &Current, now: DateTime<Utc>) -> Option<u64> {
        match self.in_force(current, now) {
            Some(i) => Some(paid_seats(&i.terms)),
            None => self.free_seats,
        }
    }

    /// Reads the installed license; called once at start-up, before serving, and then lets
    /// the clock tick once (a license may have lapsed while no server ran). A stored license
    /// that cannot be read, or whose key is no longer trusted, does not apply: Fair Source does.
    pub async fn load(&self) -> Result<()> {
        {
            let _change = self.changes.lock().await;
            let current = match self.store.system_value(LICENSE_KEY).await? {
                None => Current::FairSource,
                Some(text) => self.read_stored(&text),
            };
            match &current {
                Current::FairSource => {
                    tracing::info!(seats = %seats_text(self.free_seats), "the Fair Source license applies")
                }
                Current::Paid(i) => match &i.untrusted {
                    None => tracing::info!(
                        id = %i.terms.id, licensee = %i.terms.licensee, seats = i.terms.seats,
                        expires = %i.terms.expires, "a paid license is installed"
                    ),
                    Some(why) => tracing::warn!(id = %i.terms.id, "the installed license does not apply: {why}"),
                },
                Current::Unreadable(why) => tracing::error!("the installed license cannot be read: {why}"),
            }
            self.set(current);
        }
        // A failure to record an expiry does not keep the server from starting: its clock
        // tries again.
        if let Err(e) = self.tick().await {
            tracing::warn!(error = %e, "cannot record the expiry of the paid license");
        }
        Ok(())
    }

    fn read_stored(&self, text: &str) -> Current {
        let stored: StoredLicense = match serde_json::from_str(text) {
            Ok(s) => s,
            Err(e) => return Current::Unreadable(e.to_string()),
        };
        let (terms, untrusted) = match license::verify(&stored.document, &self.trusted) {
            Ok(terms) => (terms, None),
            Err(e @ (LicenseError::Untrusted | LicenseError::NoTrustedKeys)) => {
                match license::parse_unverified(&stored.document) {
                    Ok(terms) => (terms, Some(e.to_string())),
                    Err(e) => return Current::Unreadable(e.to_string()),
                }
            }
            Err(e) => return Current::Unreadable(e.to_string()),
        };
        Current::Paid(Installed {
            terms,
            document: stored.document,
            installed: stored.installed,
            installed_by: stored.installed_by,
            untrusted,
        })
    }

    /// Records that the instance runs under the Fair Source license, if its license history
    /// is empty: when it is initialized, and at the first start of an instance upgraded from
    /// a release that kept no history. Whether it recorded it.
    pub async fn accept_fair_source_if_new(&self, actor: Actor) -> Result<bool> {
        let now = self.clock.now();
        let accepted = HistoryEntry { time: now, change: LicenseChange::FairSourceAccepted };
        let event = NewEvent::new(now, actor, "license.accept", Target::new("license", "", FAIR_SOURCE))
            .with("freeSeats", self.free_seats);
        Ok(self.store.accept_fair_source(&accepted, &event).await?)
    }

    /// The license clock: when the paid license is past its grace period, records that it
    /// expired (an event by the system) and Fair Source applies again. Run periodically by
    /// the server, at load, and before every look at the license. The id of the license
    /// that expired, if one did now.
    pub async fn tick(&self) -> Result<Option<String>> {
        if !self.lapsed(self.clock.now()) {
            return Ok(None);
        }
        let _change = self.changes.lock().await;
        let now = self.clock.now();
        let Current::Paid(installed) = self.current() else { return Ok(None) };
        let terms = &installed.terms;
        let Standing::Lapsed = self.standing(terms, now) else { return Ok(None) };
        let until = terms.expires + chrono::Duration::days(i64::from(self.grace_days));
        // The history says when Fair Source applied again: the end of the grace period.
        let expired =
            HistoryEntry { time: until.min(now), change: LicenseChange::PaidExpired { license_id: terms.id.clone() } };
        // The seats that applied until now: the license's (through its grace period), unless
        // it did not apply at all.
        let before = if installed.untrusted.is_none() { Some(paid_seats(terms)) } else { self.free_seats };
        let event = NewEvent::new(now, Actor::system(), "license.expire", license_target(terms))
            .with("expires", terms.expires)
            .with("graceUntil", until)
            .changed("license", &terms.id, FAIR_SOURCE)
            .changed("seats", before, self.free_seats);
        self.store.record_license_change(None, &expired, &event).await?;
        self.set(Current::FairSource);
        tracing::warn!(
            id = %terms.id, expires = %terms.expires, grace_until = %until,
            "the paid license expired and its grace period ended: the Fair Source license applies again ({})",
            seats_text(self.free_seats)
        );
        Ok(Some(terms.id.clone()))
    }

    fn lapsed(&self, now: DateTime<Utc>) -> bool {
        matches!(self.current(), Current::Paid(i) if self.standing(&i.terms, now) == Standing::Lapsed)
    }

    /// The license and its state (`manageSystem`).
    pub async fn show(&self, caller: &Principal) -> Result<LicenseView> {
        caller.require_system(MANAGE_SYSTEM)?;
        self.view().await
    }

    async fn view(&self) -> Result<LicenseView> {
        self.tick().await?;
        let users = self.store.count_users().await?;
        let now = self.clock.now();
        let current = self.current();
        let paid = match &current {
            Current::Paid(i) => Some(self.describe(i, now)),
            _ => None,
        };
        let issues = self.issues(&current, users, now);
        Ok(LicenseView {
            kind: if self.in_force(&current, now).is_some() { LicenseKind::Paid } else { LicenseKind::FairSource },
            seats: self.seats_of(&current, now),
            users,
            free_seats: self.free_seats,
            grace_days: self.grace_days,
            paid,
            is_legal: issues.is_empty(),
            issues,
        })
    }

    fn describe(&self, i: &Installed, now: DateTime<Utc>) -> PaidLicense {
        let t = &i.terms;
        let state = match (&i.untrusted, self.standing(t, now)) {
            (Some(_), _) => PaidState::Untrusted,
            (None, Standing::Active) => PaidState::Active,
            (None, Standing::Grace { .. }) => PaidState::Grace,
            (None, Standing::Lapsed) => PaidState::Expired,
        };
        PaidLicense {
            id: t.id.clone(),
            licensee: t.licensee.clone(),
            seats: t.seats,
            issued: t.issued,
            expires: t.expires,
            state,
            grace_until: t.expires + chrono::Duration::days(i64::from(self.grace_days)),
            installed: i.installed,
            installed_by: i.installed_by.clone(),
        }
    }

    /// Whether the instance is used as its license allows (any signed-in user may ask).
    pub async fn legality(&self) -> Result<Legality> {
        let view = self.view().await?;
        Ok(Legality { is_legal: view.is_legal, issues: view.issues })
    }

    fn issues(&self, current: &Current, users: u64, now: DateTime<Utc>) -> Vec<LegalityIssue> {
        let mut issues = Vec::new();
        match current {
            Current::Paid(i) if i.untrusted.is_some() => issues.push(LegalityIssue {
                status: IssueStatus::LicenseUntrusted,
                message: format!(
                    "The installed license {} is not signed by a key in license.trusted_keys, so it does not \
                     apply and the Fair Source license does ({}): add its issuer's public key to \
                     license.trusted_keys, or install another license.",
                    i.terms.id,
                    seats_text(self.free_seats)
                ),
            }),
            Current::Unreadable(why) => issues.push(LegalityIssue {
                status: IssueStatus::LicenseInvalid,
                message: format!(
                    "The installed license cannot be read ({why}), so the Fair Source license applies ({}): \
                     install the license again, or remove it.",
                    seats_text(self.free_seats)
                ),
            }),
            _ => {}
        }
        if let Some(message) = self.grace_message(current, now) {
            issues.push(LegalityIssue {
                status: IssueStatus::LicenseExpired,
                message: format!("{message} Install a renewed license."),
            });
        }
        if let Some(seats) = self.seats_of(current, now)
            && users > seats
        {
            let which = match self.in_force(current, now) {
                Some(i) => format!("the license {}", i.terms.id),
                None => "the Fair Source license (license.free_seats)".to_string(),
            };
            issues.push(LegalityIssue {
                status: IssueStatus::UserLicenseExceeded,
                message: format!(
                    "{users} users exceed the {seats} seats of {which}: existing users keep working, but no user \
                     can be added until users are removed or a license with more seats is installed."
                ),
            });
        }
        issues
    }

    fn grace_message(&self, current: &Current, now: DateTime<Utc>) -> Option<String> {
        let i = self.in_force(current, now)?;
        let Standing::Grace { until } = self.standing(&i.terms, now) else { return None };
        Some(format!(
            "The license {} expired on {}; drydock falls back to Fair Source on {} ({} then).",
            i.terms.id,
            at(i.terms.expires),
            at(until),
            seats_text(self.free_seats)
        ))
    }

    /// What administrators are warned of on every dashboard page while the paid license is in
    /// its grace period, or when the installed license does not apply. Memory only: no query.
    pub fn banner(&self) -> Option<String> {
        let now = self.clock.now();
        let current = self.current();
        if let Some(grace) = self.grace_message(&current, now) {
            return Some(grace);
        }
        match current {
            Current::Paid(i) if i.untrusted.is_some() => Some(format!(
                "The installed license {} is not signed by a trusted key: the Fair Source license applies.",
                i.terms.id
            )),
            Current::Unreadable(_) => {
                Some("The installed license cannot be read: the Fair Source license applies.".to_string())
            }
            _ => None,
        }
    }

    /// The paid license in force (seats and expiry), for the audit report. The clock ticks
    /// first, so the history and this agree.
    pub async fn paid_state(&self) -> Result<Option<PaidLicenseState>> {
        self.tick().await?;
        let current = self.current();
        Ok(self
            .in_force(&current, self.clock.now())
            .map(|i| PaidLicenseState { seats: i.terms.seats, expires: i.terms.expires }))
    }

    /// Installs a paid license (`manageSystem`): the document must verify against
    /// `license.trusted_keys` and not be past its grace period; otherwise 400 naming what is
    /// wrong, and nothing changes (the refused attempt is an audit event). A license with
    /// fewer seats than there are users is accepted: existing users keep working, and
    /// `legality` reports it. It replaces an installed one.
    pub async fn install(&self, caller: &Principal, document: &str) -> Result<LicenseView> {
        caller.require_system(MANAGE_SYSTEM)?;
        self.tick().await?;
        let now = self.clock.now();
        let terms = match self.acceptable(document, now) {
            Ok(terms) => terms,
            Err((e, id)) => {
                let target = Target::new("license", id.unwrap_or_default(), "");
                let event = NewEvent::new(now, caller.into(), "license.install", target)
                    .with("refused", e.to_string())
                    .failed();
                // The refusal is what the caller needs to hear, even if its event cannot be written.
                if let Err(store) = self.store.append_event(&event).await {
                    tracing::warn!(error = %store, "cannot record a refused license installation");
                }
                return Err(e);
            }
        };
        {
            let _change = self.changes.lock().await;
            let now = self.clock.now();
            let current = self.current();
            let document = document.trim().to_string();
            if let Current::Paid(i) = &current
                && i.document == document
                && i.untrusted.is_none()
            {
                // The license in force, installed again: nothing to record.
                drop(_change);
                return self.view().await;
            }
            let users = self.store.count_users().await?;
            let stored = StoredLicense { document, installed: now, installed_by: caller.user.email.clone() };
            let text = serde_json::to_string(&stored).map_err(Error::internal)?;
            let added = HistoryEntry {
                time: now,
                change: LicenseChange::PaidAdded { by_email: caller.user.email.clone(), license_id: terms.id.clone() },
            };
            let replaced = match &current {
                Current::Paid(i) => Some(i.terms.id.clone()),
                Current::Unreadable(_) => Some(String::new()),
                Current::FairSource => None,
            };
            let installed = Installed {
                terms: terms.clone(),
                document: stored.document,
                installed: now,
                installed_by: stored.installed_by,
                untrusted: None,
            };
            let after = Current::Paid(installed);
            let mut event = NewEvent::new(now, caller.into(), "license.install", license_target(&terms))
                .with("licensee", &terms.licensee)
                .with("issued", terms.issued)
                .with("expires", terms.expires)
                .with("users", users)
                .changed("license", replaced.as_deref().unwrap_or(FAIR_SOURCE), &terms.id)
                .changed("seats", self.seats_of(&current, now), self.seats_of(&after, now));
            if users > paid_seats(&terms) {
                event = event.with("seatsExceeded", true);
            }
            self.store.record_license_change(Some(&text), &added, &event).await?;
            self.set(after);
            tracing::info!(
                id = %terms.id, licensee = %terms.licensee, seats = terms.seats, expires = %terms.expires,
                by = %caller.user.email, "paid license installed"
            );
        }
        self.view().await
    }

    /// The terms of a document that may be installed now, or why not (with its id, if known).
    fn acceptable(
        &self,
        document: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<LicenseTerms, (Error, Option<String>)> {
        if document.trim().is_empty() {
            return Err((Error::invalid("license", "the license document is empty"), None));
        }
        let id = license::parse_unverified(document).ok().map(|t| t.id);
        let terms = license::verify(document, &self.trusted).map_err(|e| (refused(e), id.clone()))?;
        if let Standing::Lapsed = self.standing(&terms, now) {
            let until = terms.expires + chrono::Duration::days(i64::from(self.grace_days));
            let message = format!(
                "the license {} expired on {} and its grace period ({} days) ended on {}: install a renewed license",
                terms.id,
                at(terms.expires),
                self.grace_days,
                at(until)
            );
            return Err((Error::invalid("expires", message), id));
        }
        Ok(terms)
    }

    /// Removes the installed paid license (`manageSystem`): the Fair Source license applies
    /// again. 404 when none is installed. The removed license's id.
    pub async fn remove(&self, caller: &Principal) -> Result<String> {
        caller.require_system(MANAGE_SYSTEM)?;
        self.tick().await?;
        let _change = self.changes.lock().await;
        let now = self.clock.now();
        let current = self.current();
        let (id, target) = match &current {
            Current::FairSource => {
                return Err(Error::NotFound(format!(
                    "no paid license is installed: the {FAIR_SOURCE} license applies ({})",
                    seats_text(self.free_seats)
                )));
            }
            Current::Paid(i) => (i.terms.id.clone(), license_target(&i.terms)),
            Current::Unreadable(_) => ("unreadable".to_string(), Target::new("license", "", "unreadable")),
        };
        let removed = HistoryEntry { time: now, change: LicenseChange::PaidRemoved { license_id: id.clone() } };
        let event = NewEvent::new(now, caller.into(), "license.remove", target)
            .changed("license", &id, FAIR_SOURCE)
            .changed("seats", self.seats_of(&current, now), self.free_seats);
        self.store.record_license_change(None, &removed, &event).await?;
        self.set(Current::FairSource);
        tracing::info!(id = %id, by = %caller.user.email, "paid license removed: the Fair Source license applies");
        Ok(id)
    }
}

fn license_target(terms: &LicenseTerms) -> Target {
    Target::new("license", &terms.id, &terms.licensee)
}
