//! The audit log in the real databases: concurrent changes chain their events without a gap
//! or a fork; a refused change leaves no event; pruning to the retention (with a clock the
//! test controls) keeps the chain verifiable from its new anchor.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use common::{postgres_store, sqlite_store};
use drydock_core::audit_log::{Actor, AuditLog, NewEvent, Target};
use drydock_core::config::{AuditConfig, HumanDuration};
use drydock_core::{Clock, NewUser, Page, Store, StoreError};
use drydock_store::SqlStore;

struct TestClock(Mutex<DateTime<Utc>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        id: format!("user-{name}"),
        name: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created: Utc::now(),
    }
}

fn created(name: &str) -> NewEvent {
    NewEvent::new(Utc::now(), Actor::system(), "user.create", Target::new("user", format!("user-{name}"), name))
}

async fn event_count(store: &SqlStore) -> u64 {
    store.audit_events(&Default::default(), Page { max_items: 1, skip_count: 0 }).await.unwrap().1
}

async fn concurrent_changes_chain_and_refusals_leave_nothing(store: SqlStore) {
    let store = Arc::new(store);
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("racer{i:02}");
                store.create_user(&new_user(&name), &[], None, &created(&name)).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
    let log = AuditLog::new(store.clone(), clock, &AuditConfig::default());
    let v = log.verify_chain().await.unwrap();
    assert!(v.intact && v.checked == 40 && v.last_seq == 40, "{v:?}");

    // A change refused in its transaction leaves no event; a seat cap likewise.
    let refused = store.create_user(&new_user("racer00"), &[], None, &created("racer00")).await;
    assert!(matches!(refused, Err(StoreError::Conflict(_))), "{refused:?}");
    let capped = store.create_user(&new_user("extra"), &[], Some(40), &created("extra")).await;
    assert!(matches!(capped, Err(StoreError::Conflict(drydock_core::store::Conflict::Seats(40)))), "{capped:?}");
    assert_eq!(event_count(&store).await, 40);
    assert!(store.user_by_name("extra").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_changes_chain() {
    let (store, _dir) = sqlite_store().await;
    concurrent_changes_chain_and_refusals_leave_nothing(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_changes_chain() {
    let Some((store, _db)) = postgres_store("drydock_audit").await else { return };
    concurrent_changes_chain_and_refusals_leave_nothing(store).await;
}

/// Two processes on one database (the server and a command on the host) each remember the
/// head they appended last; taking turns, neither forks the chain.
#[tokio::test]
async fn two_stores_on_one_database_keep_one_chain() {
    let (first, dir) = sqlite_store().await;
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    let second = drydock_store::connect_sql(&url, &Default::default()).await.unwrap();
    for i in 0..10 {
        let store = if i % 3 == 0 { &second } else { &first };
        let event = NewEvent::new(Utc::now(), Actor::system(), "test.turn", Target::system()).with("i", i);
        store.append_event(&event).await.unwrap();
    }
    let clock = Arc::new(TestClock(Mutex::new(Utc::now())));
    let v = AuditLog::new(Arc::new(first), clock, &AuditConfig::default()).verify_chain().await.unwrap();
    assert!(v.intact && v.checked == 10 && v.last_seq == 10, "{v:?}");
}

async fn pruning_keeps_the_chain_verifiable(store: SqlStore) {
    let store = Arc::new(store);
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    for day in 0..10 {
        let event = NewEvent::new(t0 + Duration::days(day), Actor::system(), "test.day", Target::system());
        store.append_event(&event.with("day", day)).await.unwrap();
    }
    let clock = Arc::new(TestClock(Mutex::new(t0 + Duration::days(9) + Duration::hours(12))));
    let keep_forever = AuditLog::new(store.clone(), clock.clone(), &AuditConfig::default());
    assert_eq!(keep_forever.prune_expired().await.unwrap(), 0, "no retention: nothing goes");

    let retention = AuditConfig { retention: HumanDuration::secs(3 * 86400), ..Default::default() };
    let log = AuditLog::new(store.clone(), clock.clone(), &retention);
    // Days 0 to 6 are older than three days before day 9.5.
    assert_eq!(log.prune_expired().await.unwrap(), 7);
    let v = log.verify_chain().await.unwrap();
    assert!(v.intact, "{v:?}");
    assert_eq!((v.checked, v.last_seq), (4, 11), "days 7, 8, 9 and the pruning's own event: {v:?}");
    let (events, total) = store.audit_events(&Default::default(), Page::default()).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(events[0].action, "audit.prune");
    assert_eq!(events[0].actor_name, "system");
    assert!(events[0].changes.contains("\"pruned\":7"), "{}", events[0].changes);
    assert_eq!(store.audit_anchor().await.unwrap().seq, 7);

    // Again: nothing more to prune, and no event for it.
    assert_eq!(log.prune_expired().await.unwrap(), 0);
    assert_eq!(event_count(&store).await, 4);

    // Deleting the oldest kept event is caught: the chain no longer starts at the anchor.
    sqlx::query("DELETE FROM audit_events WHERE seq = 8").execute(store.pool()).await.unwrap();
    let v = log.verify_chain().await.unwrap();
    assert_eq!(v.broken.map(|b| b.seq), Some(8));
}

#[tokio::test]
async fn sqlite_pruning_keeps_the_chain_verifiable() {
    let (store, _dir) = sqlite_store().await;
    pruning_keeps_the_chain_verifiable(store).await;
}

#[tokio::test]
async fn postgres_pruning_keeps_the_chain_verifiable() {
    let Some((store, _db)) = postgres_store("drydock_prune").await else { return };
    pruning_keeps_the_chain_verifiable(store).await;
}
