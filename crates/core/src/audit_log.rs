//! The audit log: who did what, when, from where, to what, and with which outcome.
//!
//! An event is written by the store in the same transaction as the change it records, so
//! there is no change without its event and no event without its change. Events form a
//! hash chain: each stores the SHA-256 of the one before, so editing or deleting a row in
//! the database breaks the chain at that row, and [`verify`] finds it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::AuditConfig;
use crate::error::{Error, Result};
use crate::model::{MANAGE_SYSTEM, Page, Principal, User};
use crate::store::Store;
use crate::workspace::Workspace;

/// The `prev_hash` of the first event ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who acted: a user (with the address their request came from) or drydock itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user's id; empty for drydock itself.
    pub id: String,
    /// The user's name, or `system` (the server's own jobs) or `cli` (commands run on the host).
    pub name: String,
    /// The client's address, when the action came over the network.
    pub client: String,
}

impl Actor {
    /// The server itself: the idle timeout, the scheduler, reconciliation, the license clock.
    pub fn system() -> Self {
        Actor { id: String::new(), name: "system".into(), client: String::new() }
    }

    /// A command run on the master host with access to the data dir (backup, restore, upgrade).
    pub fn host_cli() -> Self {
        Actor { id: String::new(), name: "cli".into(), client: String::new() }
    }

    /// Someone not signed in (a failed sign-in), named by what they typed.
    pub fn anonymous(login: &str, client: &str) -> Self {
        Actor { id: String::new(), name: login.to_string(), client: client.to_string() }
    }
}

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor { id: p.user.id.clone(), name: p.user.name.clone(), client: p.client.clone() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "success" => Some(Outcome::Success),
            "failure" => Some(Outcome::Failure),
            _ => None,
        }
    }
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `user`, `workspace`, `token`, `session`, `permission`, `limits`, `license`, `system`,
    /// `stack`, `backup`.
    pub kind: &'static str,
    pub id: String,
    /// A user's `name <email>`, a workspace's `namespace:name`, a token's name.
    pub name: String,
}

impl Target {
    pub fn new(kind: &'static str, id: impl Into<String>, name: impl Into<String>) -> Self {
        Target { kind, id: id.into(), name: name.into() }
    }

    pub fn user(user: &User) -> Self {
        Target::new("user", &user.id, format!("{} <{}>", user.name, user.email))
    }

    pub fn workspace(ws: &Workspace) -> Self {
        Target::new("workspace", &ws.id, format!("{}:{}", ws.namespace, ws.config.name))
    }

    pub fn system() -> Self {
        Target::new("system", "", "")
    }
}

/// An event to record, made by the service that makes the change.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub time: DateTime<Utc>,
    pub actor: Actor,
    /// `noun.verb`: `user.create`, `workspace.start`, `auth.signin`, …
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    /// A JSON object: for changed fields `{field: {"before", "after"}}`; other detail by name.
    pub changes: Map<String, Value>,
}

impl NewEvent {
    pub fn new(time: DateTime<Utc>, actor: Actor, action: &str, target: Target) -> Self {
        NewEvent { time, actor, action: action.to_string(), target, outcome: Outcome::Success, changes: Map::new() }
    }

    pub fn failed(mut self) -> Self {
        self.outcome = Outcome::Failure;
        self
    }

    /// Adds a detail.
    pub fn with(mut self, key: &str, value: impl Serialize) -> Self {
        self.changes.insert(key.to_string(), serde_json::to_value(value).unwrap_or(Value::Null));
        self
    }

    /// Records a changed field, before and after.
    pub fn changed(self, field: &str, before: impl Serialize, after: impl Serialize) -> Self {
        let before = serde_json::to_value(before).unwrap_or(Value::Null);
        let after = serde_json::to_value(after).unwrap_or(Value::Null);
        self.with(field, json!({"before": before, "after": after}))
    }

    /// A grant (`after` is the new permission) or a revocation (`None`) of `user`'s actions
    /// in a domain (and instance: a workspace's id), with the actions before.
    pub fn permission(
        time: DateTime<Utc>,
        caller: &Principal,
        user: &User,
        domain: &str,
        instance: &str,
        before: Option<Vec<String>>,
        after: Option<&crate::model::Permission>,
    ) -> Self {
        let action = if after.is_some() { "permission.grant" } else { "permission.revoke" };
        NewEvent::new(time, caller.into(), action, Target::user(user))
            .with("domain", domain)
            .with("instance", instance)
            .changed("actions", before.unwrap_or_default(), after.map(|p| p.actions.clone()).unwrap_or_default())
    }

    /// The `changes` column, as stored and hashed.
    pub fn changes_text(&self) -> String {
        Value::Object(self.changes.clone()).to_string()
    }

    /// The event as it is stored, chained after `prev_hash` with sequence number `seq`.
    pub fn seal(&self, seq: i64, prev_hash: &str) -> Event {
        let mut event = Event {
            seq,
            time: DateTime::from_timestamp_millis(self.time.timestamp_millis()).unwrap_or_default(),
            actor_id: self.actor.id.clone(),
            actor_name: self.actor.name.clone(),
            client: self.actor.client.clone(),
            action: self.action.clone(),
            target_type: self.target.kind.to_string(),
            target_id: self.target.id.clone(),
            target_name: self.target.name.clone(),
            outcome: self.outcome.as_str().to_string(),
            changes: self.changes_text(),
            prev_hash: prev_hash.to_string(),
            hash: String::new(),
        };
        event.hash = event.computed_hash();
        event
    }
}

/// An event as stored: every column, the chain's two hashes included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub seq: i64,
    pub time: DateTime<Utc>,
    /// Empty for drydock itself.
    pub actor_id: String,
    pub actor_name: String,
    pub client: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub target_name: String,
    /// `success` or `failure`.
    pub outcome: String,
    /// The JSON object of what changed (stored as compact JSON text with sorted keys, which
    /// is what the hash covers: re-serializing this object gives the same text).
    #[serde(serialize_with = "as_json")]
    #[schema(value_type = Object)]
    pub changes: String,
    pub prev_hash: String,
    pub hash: String,
}

impl Event {
    /// Every stored field but the hash, in order, with the sequence number and the time
    /// written as given.
    fn fields<'a>(&'a self, seq: &'a str, time: &'a str) -> [&'a str; 12] {
        [
            seq,
            time,
            &self.actor_id,
            &self.actor_name,
            &self.client,
            &self.action,
            &self.target_type,
            &self.target_id,
            &self.target_name,
            &self.outcome,
            &self.changes,
            &self.prev_hash,
        ]
    }

    /// SHA-256 (hex) of every field (the previous hash included, the time in epoch
    /// milliseconds), each length-prefixed so no two different rows hash alike.
    pub fn computed_hash(&self) -> String {
        let mut h = Sha256::new();
        let (seq, time) = (self.seq.to_string(), self.time.timestamp_millis().to_string());
        for field in self.fields(&seq, &time) {
            h.update((field.len() as u64).to_be_bytes());
            h.update(field.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

/// Writes JSON text as the JSON it holds (as a string if it is not JSON).
fn as_json<S: serde::Serializer>(text: &str, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => value.serialize(serializer),
        Err(_) => serializer.serialize_str(text),
    }
}

/// Where the kept chain starts: after pruning, the last pruned event's seq and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl Anchor {
    pub fn genesis() -> Self {
        Anchor { seq: 0, hash: GENESIS.to_string() }
    }
}

/// Where and why the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChainBreak {
    /// The first event that does not verify (the seq expected, when events are missing).
    pub seq: i64,
    pub reason: String,
}

/// Checks events in order, continuing from `state` (the anchor, then the last event seen);
/// feed it every event oldest first, then call [`ChainCheck::finish`].
#[derive(Debug, Clone)]
pub struct ChainCheck {
    last: Anchor,
    checked: u64,
    broken: Option<ChainBreak>,
}

impl ChainCheck {
    pub fn new(anchor: Anchor) -> Self {
        ChainCheck { last: anchor, checked: 0, broken: None }
    }

    /// Checks the next event; returns false once the chain is broken (stop feeding).
    pub fn next(&mut self, event: &Event) -> bool {
        if self.broken.is_some() {
            return false;
        }
        let expected = self.last.seq + 1;
        let reason = if event.seq != expected {
            Some(format!("event {expected} is missing (the next event is {}): events were deleted", event.seq))
        } else if event.prev_hash != self.last.hash {
            Some(
                "its previous hash does not match the event before it: an event before it was changed or deleted"
                    .into(),
            )
        } else if event.computed_hash() != event.hash {
            Some("its content does not match its hash: the event was changed".into())
        } else {
            None
        };
        if let Some(reason) = reason {
            self.broken = Some(ChainBreak { seq: expected, reason });
            return false;
        }
        self.last = Anchor { seq: event.seq, hash: event.hash.clone() };
        self.checked += 1;
        true
    }

    pub fn finish(self) -> Verification {
        Verification {
            intact: self.broken.is_none(),
            checked: self.checked,
            last_seq: self.last.seq,
            broken: self.broken,
        }
    }
}

/// The result of checking the whole chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub intact: bool,
    /// Events checked (up to the break).
    pub checked: u64,
    /// The last good event's seq.
    pub last_seq: i64,
    pub broken: Option<ChainBreak>,
}

/// A time bound of a filter: RFC 3339 (`2026-11-30T12:00:00Z`) or a day (`2026-11-30`, its
/// start in UTC).
pub fn parse_time(field: &str, text: &str) -> Result<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            Error::invalid(field, format!("{field} '{text}' is not a time: write 2026-11-30 or 2026-11-30T12:00:00Z"))
        })
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// The actor's name (exact).
    pub actor: Option<String>,
    /// The action, exact (`user.create`) or a prefix ending in `.` (`workspace.`).
    pub action: Option<String>,
    /// Matches the target's id or name (contains, case-insensitive).
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// The columns of an exported CSV, in order.
pub const CSV_HEADER: &str =
    "seq,time,actorId,actorName,client,action,targetType,targetId,targetName,outcome,changes,prevHash,hash";

impl Event {
    /// The event as one CSV row (RFC 4180 quoting), without the line end.
    pub fn csv_row(&self) -> String {
        let (seq, time) = (self.seq.to_string(), self.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let fields = self.fields(&seq, &time);
        fields
            .iter()
            .chain([&self.hash.as_str()])
            .map(|field| {
                if field.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", field.replace('"', "\"\""))
                } else {
                    field.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Events read at a time when verifying or exporting the whole log.
pub const BATCH: u32 = 1000;

/// Reading, verifying, exporting and pruning the audit log (administrators: `manageSystem`).
pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// `None`: events are kept forever.
    retention: Option<chrono::Duration>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: &AuditConfig) -> Self {
        let retention = (!config.retention.0.is_zero())
            .then(|| chrono::Duration::from_std(config.retention.0).unwrap_or(chrono::Duration::MAX));
        AuditLog { store, clock, retention }
    }

    /// Events matching the filter, newest first, and how many match.
    pub async fn events(&self, caller: &Principal, filter: &EventFilter, page: Page) -> Result<(Vec<Event>, u64)> {
        caller.require_system(MANAGE_SYSTEM)?;
        if let (Some(since), Some(until)) = (filter.since, filter.until)
            && since >= until
        {
            return Err(Error::invalid("since", "since must be before until"));
        }
        Ok(self.store.audit_events(filter, page).await?)
    }

    /// Up to [`BATCH`] events after `after_seq`, oldest first: the export reads the log with it.
    pub async fn batch_after(&self, caller: &Principal, after_seq: i64) -> Result<Vec<Event>> {
        caller.require_system(MANAGE_SYSTEM)?;
        Ok(self.store.audit_events_after(after_seq, BATCH).await?)
    }

    /// Checks the whole chain (`manageSystem`).
    pub async fn verify(&self, caller: &Principal) -> Result<Verification> {
        caller.require_system(MANAGE_SYSTEM)?;
        self.verify_chain().await
    }

    /// Checks the whole chain from its anchor, in batches; for `drydock audit verify` on the
    /// host as well as for the API.
    pub async fn verify_chain(&self) -> Result<Verification> {
        let mut check = ChainCheck::new(self.store.audit_anchor().await?);
        let mut after = i64::MIN;
        loop {
            let batch = self.store.audit_events_after(after, BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            if !batch.iter().all(|e| check.next(e)) {
                break;
            }
        }
        Ok(check.finish())
    }

    /// Deletes the events older than `audit.retention` (none without one); the kept chain
    /// still verifies from its new anchor, and the pruning is itself an event.
    pub async fn prune_expired(&self) -> Result<u64> {
        let Some(retention) = self.retention else { return Ok(0) };
        let now = self.clock.now();
        let before = now.checked_sub_signed(retention).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let event = NewEvent::new(now, Actor::system(), "audit.prune", Target::system())
            .with("retention", crate::config::HumanDuration(retention.to_std().unwrap_or_default()).to_string());
        let pruned = self.store.prune_audit_events(before, &event).await?;
        if pruned > 0 {
            tracing::info!(pruned, "audit events older than the retention pruned");
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: usize) -> Vec<Event> {
        let mut prev = Anchor::genesis();
        (0..n)
            .map(|i| {
                let e = NewEvent::new(Utc::now(), Actor::system(), "test.event", Target::system()).with("i", i);
                let sealed = e.seal(prev.seq + 1, &prev.hash);
                prev = Anchor { seq: sealed.seq, hash: sealed.hash.clone() };
                sealed
            })
            .collect()
    }

    fn check(anchor: Anchor, events: &[Event]) -> Verification {
        let mut c = ChainCheck::new(anchor);
        for e in events {
            if !c.next(e) {
                break;
            }
        }
        c.finish()
    }

    #[test]
    fn csv_rows_quote_what_needs_it_and_times_parse() {
        let e = NewEvent::new(Utc::now(), Actor::anonymous("a,b", "10.0.0.1"), "auth.signin", Target::system())
            .with("reason", "said \"no\"\ntwice");
        let row = e.seal(1, GENESIS).csv_row();
        assert!(row.contains(",\"a,b\",10.0.0.1,auth.signin,"), "{row}");
        assert!(row.contains(r#""{""reason"":""said \""no\""\ntwice""}""#), "{row}");
        assert_eq!(row.split(',').next(), Some("1"));
        assert_eq!(parse_time("since", "2026-11-30").unwrap().to_rfc3339(), "2026-11-30T00:00:00+00:00");
        assert_eq!(parse_time("until", "2026-11-30T12:00:00+01:00").unwrap().to_rfc3339(), "2026-11-30T11:00:00+00:00");
        assert!(matches!(parse_time("since", "yesterday"), Err(Error::InvalidInput { field, .. }) if field == "since"));
    }

    #[test]
    fn an_intact_chain_verifies_and_any_edit_or_deletion_breaks_it() {
        let events = chain(5);
        assert!(check(Anchor::genesis(), &events).intact);

        let mut edited = events.clone();
        edited[2].actor_name = "mallory".into();
        let v = check(Anchor::genesis(), &edited);
        assert_eq!(v.broken.as_ref().map(|b| b.seq), Some(3), "{v:?}");

        let mut rehashed = edited.clone();
        rehashed[2].hash = rehashed[2].computed_hash();
        assert_eq!(check(Anchor::genesis(), &rehashed).broken.map(|b| b.seq), Some(4), "the next one notices");

        let mut deleted = events.clone();
        deleted.remove(1);
        assert_eq!(check(Anchor::genesis(), &deleted).broken.map(|b| b.seq), Some(2));

        // Pruned: the kept chain verifies from its anchor.
        let anchor = Anchor { seq: events[1].seq, hash: events[1].hash.clone() };
        assert!(check(anchor, &events[2..]).intact);
    }
}
