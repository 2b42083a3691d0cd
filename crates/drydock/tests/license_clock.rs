//! The license clock, with a clock the test controls (the release binary has no such knob):
//! drydock's services on a real SQLite or PostgreSQL store. A paid license is active, then
//! expired within its grace period (it still applies: its seats, the admins' banner), then
//! lapsed: the expiry is recorded exactly once (history line and event, by the system) and
//! the Fair Source seats apply again — also when it lapsed while no server ran. A license
//! whose key is no longer trusted does not apply.

mod common;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use drydock_core::audit_log::Actor;
use drydock_core::config::LicenseConfig;
use drydock_core::license::{self, LicenseTerms};
use drydock_core::licenses::{IssueStatus, LicenseKind, PaidState};
use drydock_core::runtime::Unavailable;
use drydock_core::users::CreateUser;
use drydock_core::{Clock, Config, Drydock, Error, Principal, Store};
use drydock_store::{SqlStore, connect_sql};
use sqlx::Row;

struct TestClock(Mutex<DateTime<Utc>>);

impl TestClock {
    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

struct Keys {
    private: String,
    public: String,
}

impl Keys {
    fn new() -> Keys {
        let (private, public) = license::generate_key_pair();
        Keys { private, public }
    }

    fn issue(&self, id: &str, seats: i64, issued: DateTime<Utc>, expires: DateTime<Utc>) -> String {
        let terms = LicenseTerms { id: id.into(), licensee: "Example Corp".into(), seats, issued, expires };
        terms.sign(&license::parse_private_key(&self.private).unwrap()).unwrap()
    }
}

fn services(store: &Arc<SqlStore>, clock: &Arc<TestClock>, trusted: &[&str]) -> Drydock {
    let config = Config {
        license: LicenseConfig {
            free_seats: 2,
            trusted_keys: trusted.iter().map(|k| k.to_string()).collect(),
            grace_days: 15,
        },
        ..Config::default()
    };
    let runtime = Arc::new(Unavailable { reason: "no workspaces in this test".into() });
    Drydock::new(store.clone() as Arc<dyn Store>, &config, clock.clone() as Arc<dyn Clock>, runtime)
}

async fn count(store: &SqlStore, sql: &str) -> i64 {
    sqlx::query(sql).fetch_one(store.pool()).await.unwrap().try_get::<i64, _>(0).unwrap()
}

async fn admin(d: &Drydock) -> Arc<Principal> {
    let user = d
        .users
        .bootstrap_admin(CreateUser {
            name: "admin".into(),
            email: "admin@example.com".into(),
            password: "admin-password-1".into(),
        })
        .await
        .unwrap();
    let (_, token) = d.auth.issue_token(&user.id, "test", None, Actor::host_cli()).await.unwrap();
    d.auth.authenticate(&token).await.unwrap()
}

async fn the_license_clock(store: SqlStore) {
    store.migrate().await.unwrap();
    let store = Arc::new(store);
    let keys = Keys::new();
    let t0 = at("2030-01-01T00:00:00Z");
    let clock = Arc::new(TestClock(Mutex::new(t0)));
    let d = services(&store, &clock, &[&keys.public]);

    assert!(d.licenses.accept_fair_source_if_new(Actor::host_cli()).await.unwrap());
    assert!(!d.licenses.accept_fair_source_if_new(Actor::system()).await.unwrap(), "accepted once only");
    let admin = admin(&d).await;
    d.licenses.load().await.unwrap();
    assert_eq!(d.seats.get(), Some(2), "Fair Source: license.free_seats");
    assert_eq!(d.licenses.paid_state().await.unwrap(), None);

    // Active.
    let expires = t0 + Duration::days(30);
    let document = keys.issue("L-CLOCK", 5, t0 - Duration::days(1), expires);
    let view = d.licenses.install(&admin, &document).await.unwrap();
    assert_eq!(view.kind, LicenseKind::Paid);
    assert_eq!(view.paid.as_ref().unwrap().state, PaidState::Active);
    assert_eq!((view.seats, view.users, view.is_legal), (Some(5), 1, true));
    assert_eq!(d.seats.get(), Some(5));
    assert_eq!(d.licenses.banner(), None);
    let paid = d.licenses.paid_state().await.unwrap().unwrap();
    assert_eq!((paid.seats, paid.expires), (5, expires));

    // Expired, in its grace period: it still applies, and admins are warned.
    clock.set(expires + Duration::days(1));
    assert_eq!(d.licenses.tick().await.unwrap(), None);
    let view = d.licenses.show(&admin).await.unwrap();
    assert_eq!(view.kind, LicenseKind::Paid);
    let paid_view = view.paid.as_ref().unwrap();
    assert_eq!(paid_view.state, PaidState::Grace);
    assert_eq!(paid_view.grace_until, expires + Duration::days(15));
    assert_eq!(view.seats, Some(5), "the license's seats through the grace period");
    assert_eq!(d.seats.get(), Some(5));
    assert!(!view.is_legal);
    assert_eq!(view.issues[0].status, IssueStatus::LicenseExpired);
    let banner = d.licenses.banner().expect("a banner during the grace period");
    assert!(
        banner.starts_with(
            "The license L-CLOCK expired on 2030-01-31 00:00 UTC; drydock falls back to Fair Source on \
             2030-02-15 00:00 UTC"
        ),
        "{banner}"
    );
    assert!(d.licenses.paid_state().await.unwrap().is_some(), "the report still sees it");

    // Lapsed: recorded exactly once, however many ticks race.
    clock.set(expires + Duration::days(15) + Duration::minutes(3));
    let ticks = futures::future::join_all((0..8).map(|_| d.licenses.tick())).await;
    let expired: Vec<_> = ticks.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(expired, ["L-CLOCK"]);
    assert_eq!(d.licenses.tick().await.unwrap(), None);
    assert_eq!(d.seats.get(), Some(2), "back to license.free_seats");
    let view = d.licenses.show(&admin).await.unwrap();
    assert_eq!((view.kind, view.paid.is_none(), view.seats), (LicenseKind::FairSource, true, Some(2)));
    assert_eq!(d.licenses.banner(), None);
    assert_eq!(d.licenses.paid_state().await.unwrap(), None);
    assert_eq!(count(&store, "SELECT COUNT(*) FROM license_history WHERE kind = 'paidExpired'").await, 1);
    let row = sqlx::query(
        "SELECT h.time AS htime, e.actor_name, e.target_id, e.changes FROM license_history h, audit_events e \
         WHERE h.kind = 'paidExpired' AND e.action = 'license.expire'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    let history_time: i64 = row.try_get("htime").unwrap();
    assert_eq!(history_time, (expires + Duration::days(15)).timestamp_millis(), "when Fair Source applied again");
    assert_eq!(row.try_get::<String, _>("actor_name").unwrap(), "system");
    assert_eq!(row.try_get::<String, _>("target_id").unwrap(), "L-CLOCK");
    let changes: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("changes").unwrap()).unwrap();
    assert_eq!(changes["seats"], serde_json::json!({"before": 5, "after": 2}), "{changes}");
    assert_eq!(count(&store, "SELECT COUNT(*) FROM audit_events WHERE action = 'license.expire'").await, 1);
    assert_eq!(store.system_value("license").await.unwrap(), None);

    // A restart records nothing more.
    let restarted = services(&store, &clock, &[&keys.public]);
    assert!(!restarted.licenses.accept_fair_source_if_new(Actor::system()).await.unwrap());
    restarted.licenses.load().await.unwrap();
    assert_eq!(restarted.seats.get(), Some(2));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM license_history").await, 3, "accepted, added, expired");

    // A license past its grace period is refused, and nothing changes but the refusal's event.
    let now = clock.now();
    let stale = keys.issue("L-STALE", 9, now - Duration::days(60), now - Duration::days(16));
    match restarted.licenses.install(&admin, &stale).await {
        Err(Error::InvalidInput { field, message }) => {
            assert_eq!(field, "expires");
            assert!(message.contains("L-STALE") && message.contains("grace period"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(count(&store, "SELECT COUNT(*) FROM license_history").await, 3);
    assert_eq!(
        count(&store, "SELECT COUNT(*) FROM audit_events WHERE action = 'license.install' AND outcome = 'failure'")
            .await,
        1
    );
    // Within the grace period at install: accepted, in GRACE at once.
    let late = keys.issue("L-LATE", 4, now - Duration::days(60), now - Duration::days(2));
    let view = restarted.licenses.install(&admin, &late).await.unwrap();
    assert_eq!((view.paid.unwrap().state, view.seats), (PaidState::Grace, Some(4)));

    // It lapses while no server runs: the next start records it.
    drop(restarted);
    clock.set(now + Duration::days(30));
    let later = services(&store, &clock, &[&keys.public]);
    later.licenses.load().await.unwrap();
    assert_eq!(later.seats.get(), Some(2));
    assert_eq!(count(&store, "SELECT COUNT(*) FROM license_history WHERE kind = 'paidExpired'").await, 2);

    // A license whose key is taken out of license.trusted_keys does not apply.
    let fresh = keys.issue("L-KEY", 7, clock.now() - Duration::days(1), clock.now() + Duration::days(300));
    later.licenses.install(&admin, &fresh).await.unwrap();
    assert_eq!(later.seats.get(), Some(7));
    let other = Keys::new();
    let distrusting = services(&store, &clock, &[&other.public]);
    distrusting.licenses.load().await.unwrap();
    assert_eq!(distrusting.seats.get(), Some(2));
    let view = distrusting.licenses.show(&admin).await.unwrap();
    assert_eq!((view.kind, view.paid.as_ref().unwrap().state), (LicenseKind::FairSource, PaidState::Untrusted));
    assert_eq!(view.issues[0].status, IssueStatus::LicenseUntrusted);
    assert!(distrusting.licenses.banner().is_some());
    assert_eq!(distrusting.licenses.paid_state().await.unwrap(), None);
    // An administrator can still remove it.
    assert_eq!(distrusting.licenses.remove(&admin).await.unwrap(), "L-KEY");
    assert!(matches!(distrusting.licenses.remove(&admin).await, Err(Error::NotFound(_))));
    store.pool().close().await;
}

#[tokio::test]
async fn license_clock_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    the_license_clock(connect_sql(&url, &Default::default()).await.unwrap()).await;
}

#[tokio::test]
async fn license_clock_on_postgres() {
    let Some(server) = common::postgres_url() else { return };
    let db = common::PgDatabase::create(&server);
    the_license_clock(connect_sql(&db.url, &Default::default()).await.unwrap()).await;
}
