//! Licenses on a running instance, on SQLite and PostgreSQL: a license issued offline and
//! trusted by the config is installed (CLI and API), shown and checked for legality; one
//! signed by another key is refused and nothing changes; seats are enforced — also when many
//! users are created at once at the limit; removal brings back Fair Source and its
//! `license.free_seats`; every change is an audit event and a license history line. The
//! dashboard page and the admins' banner during the grace period, over plain HTTP.

mod common;

use chrono::{Duration, Utc};
use common::{ADMIN_PASSWORD, Backend, Instance, browser_like, call, field_value, sign_in, text};
use drydock_core::license::{self, LicenseTerms};
use drydock_store::{SqlStore, connect_sql};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Row;

/// A key pair made with `drydock license keygen`: the key file and the public key.
fn keygen(dd: &Instance, dir: &std::path::Path) -> (String, String) {
    let key = dir.join("issuer.key").display().to_string();
    let out = dd.cli(&["license", "keygen", "--out", &key]);
    assert!(out.status.success(), "{}", text(&out));
    (key, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A license signed in the test (any dates), with a private key (base64).
fn sign(private: &str, id: &str, seats: i64, issued_days_ago: i64, expires_in_days: i64) -> String {
    let now = Utc::now();
    let terms = LicenseTerms {
        id: id.into(),
        licensee: "Example Corp".into(),
        seats,
        issued: now - Duration::days(issued_days_ago),
        expires: now + Duration::days(expires_in_days),
    };
    terms.sign(&license::parse_private_key(private).unwrap()).unwrap()
}

async fn database(dd: &Instance) -> SqlStore {
    let url = match dd.backend {
        Backend::Sqlite => format!("sqlite://{}", dd.sqlite_path().display()),
        Backend::Postgres => dd.db.as_ref().unwrap().url.clone(),
    };
    connect_sql(&url, &Default::default()).await.unwrap()
}

/// `kind license_id by_email` of every license history line, oldest first.
async fn history(db: &SqlStore) -> Vec<String> {
    let rows = sqlx::query("SELECT kind, license_id, by_email FROM license_history ORDER BY seq")
        .fetch_all(db.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let cols: Vec<String> = (0..3).map(|i| r.get::<String, _>(i)).collect();
            cols.join(" ").trim().to_string()
        })
        .collect()
}

/// `(action, actor_name, target_id, target_name, outcome, changes)` of the license events.
async fn license_events(db: &SqlStore) -> Vec<(String, String, String, String, String, Value)> {
    let rows = sqlx::query(
        "SELECT action, actor_name, target_id, target_name, outcome, changes FROM audit_events \
         WHERE action LIKE 'license.%' ORDER BY seq",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    rows.iter()
        .map(|r| {
            let s = |i: usize| r.get::<String, _>(i);
            (s(0), s(1), s(2), s(3), s(4), serde_json::from_str(&s(5)).unwrap())
        })
        .collect()
}

async fn put_license(dd: &Instance, token: &str, content_type: &str, body: &str) -> (StatusCode, Value) {
    let r = dd
        .req(Method::PUT, "/api/license")
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    common::answer(r).await
}

async fn create(dd: &Instance, token: &str, name: &str) -> (StatusCode, Value) {
    let body = json!({"name": name, "email": format!("{name}@example.com"), "password": "user-password-1"});
    call(dd, token, Method::POST, "/api/user", Some(body)).await
}

async fn license_story(backend: Backend) {
    let keys = tempfile::tempdir().unwrap();
    let (key_file, public) = keygen(&Instance::new(Backend::Sqlite, &[]).unwrap(), keys.path());
    let env = [("DRYDOCK_LICENSE__TRUSTED_KEYS", public.as_str()), ("DRYDOCK_LICENSE__FREE_SEATS", "4")];
    let Some(mut dd) = Instance::init_with(backend, &env) else { return };
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let db = database(&dd).await;

    // Fair Source, accepted at init, with license.free_seats.
    let (status, view) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(
        (view["kind"].as_str(), view["seats"].as_u64(), view["users"].as_u64()),
        (Some("FAIR_SOURCE"), Some(4), Some(1))
    );
    assert!(view["paid"].is_null() && view["isLegal"] == true, "{view}");
    let (status, legality) = call(&dd, &admin, Method::GET, "/api/license/legality", None).await;
    assert_eq!((status, legality), (StatusCode::OK, json!({"isLegal": true, "issues": []})));
    assert_eq!(history(&db).await, ["fairSourceAccepted"]);

    // A license signed by another key, or no license at all, is refused and nothing changes.
    let (other_private, _) = license::generate_key_pair();
    let forged = sign(&other_private, "L-FORGED", 100, 1, 365);
    let (status, body) = put_license(&dd, &admin, "text/plain", &forged).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not signed by a trusted key"), "{body}");
    assert_eq!(body["field"], "license");
    for (content_type, bad, says) in [
        ("text/plain", "not a license", "not a license document"),
        ("application/json", "{\"id\": \"x\"}", "not a license document"),
        ("text/plain", "   ", "empty"),
        ("application/x-www-form-urlencoded", forged.as_str(), "Content-Type"),
    ] {
        let (status, body) = put_license(&dd, &admin, content_type, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains(says), "{bad}: {body}");
    }
    let (_, after) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!(after, view, "nothing changed");
    assert_eq!(history(&db).await, ["fairSourceAccepted"]);

    // Issued offline with the CLI, installed with the CLI: 3 seats.
    let out = dd.cli(&[
        "license",
        "issue",
        "--key",
        &key_file,
        "--seats",
        "3",
        "--expires",
        "2099-12-31",
        "--licensee",
        "Example Corp",
        "--id",
        "L-THREE",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let document = keys.path().join("three.json");
    std::fs::write(&document, &out.stdout).unwrap();
    let out = dd.cli(&["license", "install", &document.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("license L-THREE installed"), "{}", text(&out));
    let out = dd.cli(&["license", "show"]);
    let shown = text(&out);
    assert!(
        shown.contains("paid license L-THREE for Example Corp: active") && shown.contains("1 of 3 used"),
        "{shown}"
    );
    let (_, view) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!((view["kind"].as_str(), view["seats"].as_u64()), (Some("PAID"), Some(3)), "{view}");
    let paid = &view["paid"];
    assert_eq!((paid["id"].as_str(), paid["state"].as_str()), (Some("L-THREE"), Some("ACTIVE")), "{view}");
    assert_eq!((paid["seats"].as_i64(), paid["installedBy"].as_str()), (Some(3), Some("admin@localhost")));
    assert_eq!(paid["expires"], "2099-12-31T23:59:59Z");
    assert_eq!(paid["graceUntil"], "2100-01-15T23:59:59Z");
    // The audit report prints the history and the paid license's seats and expiry.
    let r = dd.req(Method::GET, "/api/audit").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let report = r.text().await.unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert!(lines[0].ends_with(": Fair Source license was accepted."), "{report}");
    assert!(lines[1].ends_with(": admin@localhost added paid license L-THREE."), "{report}");
    let state = report.split("--- CURRENT STATE ---\n").nth(1).unwrap();
    assert!(
        state.starts_with("Number of users: 1\nNumber of licensed seats: 3\nLicense expiration: 31 December 2099\n"),
        "{report}"
    );

    // Ten users at once with two seats left: exactly two are created, the others get 409.
    let attempts = (0..10).map(|i| {
        let (dd, admin) = (&dd, &admin);
        async move { create(dd, admin, &format!("racer{i}")).await }
    });
    let results = futures::future::join_all(attempts).await;
    let created = results.iter().filter(|(s, _)| *s == StatusCode::CREATED).count();
    let refused: Vec<_> = results.iter().filter(|(s, _)| *s == StatusCode::CONFLICT).collect();
    assert_eq!((created, refused.len()), (2, 8), "{results:?}");
    let message = refused[0].1["message"].as_str().unwrap();
    assert!(message.contains("allows 3 users (seats) and all 3 are taken"), "{message}");
    let users: i64 = sqlx::query("SELECT COUNT(*) FROM users").fetch_one(db.pool()).await.unwrap().get(0);
    assert_eq!(users, 3, "never more than the seats");
    let (status, body) = create(&dd, &admin, "one-more").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, legality) = call(&dd, &admin, Method::GET, "/api/license/legality", None).await;
    assert_eq!(legality["isLegal"], true, "3 users on 3 seats: {legality}");

    // A license with fewer seats than users: accepted, reported, and existing users keep working.
    let racer =
        results.iter().find(|(s, _)| *s == StatusCode::CREATED).unwrap().1["name"].as_str().unwrap().to_string();
    let private = std::fs::read_to_string(&key_file).unwrap();
    let two = sign(&private, "L-TWO", 2, 1, 365);
    let (status, view) = put_license(&dd, &admin, "application/json", &two).await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!((view["paid"]["id"].as_str(), view["isLegal"].as_bool()), (Some("L-TWO"), Some(false)), "{view}");
    assert_eq!(view["issues"][0]["status"], "USER_LICENSE_EXCEEDED");
    assert!(view["issues"][0]["message"].as_str().unwrap().contains("3 users exceed the 2 seats"), "{view}");
    let user_token = dd.token_for(&racer, "user-password-1").await;
    let (status, legality) = call(&dd, &user_token, Method::GET, "/api/license/legality", None).await;
    assert_eq!((status, legality["isLegal"].as_bool()), (StatusCode::OK, Some(false)), "any user may ask");
    let (status, body) = create(&dd, &admin, "one-more").await;
    assert!(status == StatusCode::CONFLICT && body["message"].as_str().unwrap().contains("allows 2 users"), "{body}");
    // Only administrators see, install and remove the license.
    for (method, status) in [(Method::GET, StatusCode::FORBIDDEN), (Method::DELETE, StatusCode::FORBIDDEN)] {
        assert_eq!(call(&dd, &user_token, method, "/api/license", None).await.0, status);
    }
    assert_eq!(put_license(&dd, &user_token, "text/plain", &two).await.0, StatusCode::FORBIDDEN);
    assert_eq!(dd.req(Method::GET, "/api/license/legality").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);

    // Removed (the CLI asks first; without a terminal it needs --yes): Fair Source again,
    // with license.free_seats = 4.
    let out = dd.cli(&["license", "remove"]);
    assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
    assert_eq!(call(&dd, &admin, Method::GET, "/api/license", None).await.1["paid"]["id"], "L-TWO");
    let out = dd.cli(&["license", "remove", "--yes"]);
    assert!(out.status.success() && text(&out).contains("license L-TWO removed"), "{}", text(&out));
    let (_, view) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!(
        (view["kind"].as_str(), view["seats"].as_u64(), view["isLegal"].as_bool()),
        (Some("FAIR_SOURCE"), Some(4), Some(true))
    );
    let (status, body) = call(&dd, &admin, Method::DELETE, "/api/license", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(create(&dd, &admin, "fourth").await.0, StatusCode::CREATED);
    let (status, body) = create(&dd, &admin, "fifth").await;
    assert!(status == StatusCode::CONFLICT && body["message"].as_str().unwrap().contains("allows 4 users"), "{body}");

    // Every change: a history line and an event, by whom, about which license, with no signature.
    assert_eq!(
        history(&db).await,
        [
            "fairSourceAccepted",
            "paidAdded L-THREE admin@localhost",
            "paidAdded L-TWO admin@localhost",
            "paidRemoved L-TWO"
        ]
    );
    let events = license_events(&db).await;
    let summary: Vec<_> = events.iter().map(|e| format!("{} {} {} {}", e.0, e.1, e.2, e.4)).collect();
    assert_eq!(
        summary,
        [
            "license.accept cli  success",
            "license.install admin L-FORGED failure",
            "license.install admin  failure",
            "license.install admin  failure",
            "license.install admin  failure",
            "license.install admin L-THREE success",
            "license.install admin L-TWO success",
            "license.remove admin L-TWO success",
        ],
        "{events:?}"
    );
    assert!(events[1].5["refused"].as_str().unwrap().contains("trusted key"), "{:?}", events[1]);
    assert_eq!(events[5].3, "Example Corp");
    assert_eq!(events[5].5["seats"], json!({"before": 4, "after": 3}), "{:?}", events[5]);
    assert_eq!(events[6].5["license"], json!({"before": "L-THREE", "after": "L-TWO"}));
    assert_eq!(events[6].5["seatsExceeded"], true);
    assert_eq!(events[7].5["seats"], json!({"before": 2, "after": 4}));
    for e in &events {
        let changes = e.5.to_string();
        assert!(!changes.contains("signature") && !changes.contains(&private.trim()[..20]), "{changes}");
    }
    db.pool().close().await;
    dd.stop();
}

#[tokio::test]
async fn license_story_on_sqlite() {
    license_story(Backend::Sqlite).await;
}

#[tokio::test]
async fn license_story_on_postgres() {
    license_story(Backend::Postgres).await;
}

/// The License page, and the banner administrators (only they) see on every page while the
/// paid license is in its grace period.
#[tokio::test]
async fn dashboard_page_and_grace_banner() {
    let (private, public) = license::generate_key_pair();
    let env = [("DRYDOCK_LICENSE__TRUSTED_KEYS", public.as_str()), ("DRYDOCK_LICENSE__GRACE_DAYS", "15")];
    let mut dd = Instance::init_with(Backend::Sqlite, &env).unwrap();
    dd.start().await;
    let admin_token = dd.token_for("admin", ADMIN_PASSWORD).await;
    dd.create_user(&admin_token, "plain", "plain-password").await;
    let admin = browser_like();
    sign_in(&dd, &admin, "admin", ADMIN_PASSWORD).await;
    let page = |client: &reqwest::Client, path: &str| {
        let request = client.get(format!("{}{path}", dd.url));
        async move {
            let r = request.send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };

    let (status, html) = page(&admin, "/admin/license").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("data-kind=\"fair-source\"") && html.contains("id=\"license-form\""), "{html}");
    assert!(!html.contains("id=\"license-banner\"") && !html.contains("id=\"license-remove\""));
    let (_, users) = page(&admin, "/admin/users").await;
    assert!(users.contains("id=\"nav-license\""));

    // Installed through the form: a license that expired two days ago (in its grace period).
    let csrf = field_value(&html, "csrf").unwrap();
    let forged = sign(&license::generate_key_pair().0, "L-FORGED", 5, 30, 300);
    let form = [("csrf", csrf.as_str()), ("document", forged.as_str())];
    let r = admin.post(format!("{}/admin/license", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"license-error\"") && html.contains("trusted key"), "{html}");
    let late = sign(&private, "L-LATE", 5, 60, -2);
    let form = [("csrf", csrf.as_str()), ("document", late.as_str())];
    let r = admin.post(format!("{}/admin/license", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&admin, "/admin/license").await;
    assert!(html.contains("data-kind=\"paid\" data-state=\"grace\""), "{html}");
    assert!(html.contains("2 of 5 used"), "{html}");
    for path in ["/", "/admin/license", "/account", "/admin/users"] {
        let (_, html) = page(&admin, path).await;
        let banner = html.split("id=\"license-banner\"").nth(1).unwrap_or_else(|| panic!("no banner on {path}"));
        assert!(
            banner.contains("The license L-LATE expired on") && banner.contains("drydock falls back to Fair Source on"),
            "{path}: {banner}"
        );
    }
    let plain = browser_like();
    sign_in(&dd, &plain, "plain", "plain-password").await;
    for path in ["/", "/account"] {
        let (status, html) = page(&plain, path).await;
        assert!(status == StatusCode::OK && !html.contains("license-banner"), "{path}: users see no banner");
    }
    assert_eq!(page(&plain, "/admin/license").await.0, StatusCode::FORBIDDEN);

    // Removed from the page: it needs the box ticked.
    let r =
        admin.post(format!("{}/admin/license/remove", dd.url)).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let form = [("csrf", csrf.as_str()), ("confirm", "on")];
    let r = admin.post(format!("{}/admin/license/remove", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let (_, html) = page(&admin, "/admin/license").await;
    assert!(html.contains("data-kind=\"fair-source\"") && !html.contains("id=\"license-banner\""), "{html}");
    dd.stop();
}

/// `license.free_seats` caps users without any paid license.
#[tokio::test]
async fn free_seats_cap_without_a_license() {
    let mut dd = Instance::init_with(Backend::Sqlite, &[("DRYDOCK_LICENSE__FREE_SEATS", "2")]).unwrap();
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    assert_eq!(create(&dd, &admin, "second").await.0, StatusCode::CREATED);
    let (status, body) = create(&dd, &admin, "third").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body["message"].as_str().unwrap().contains("allows 2 users (seats)"), "{body}");
    let (_, view) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!(
        (view["kind"].as_str(), view["seats"].as_u64(), view["users"].as_u64()),
        (Some("FAIR_SOURCE"), Some(2), Some(2))
    );
    dd.stop();
}

/// The server's license clock, on its own: with no grace period, a license that expires a few
/// seconds after it is installed gives way to Fair Source — recorded by the system — while
/// nobody asks about the license.
#[tokio::test]
async fn the_server_clock_expires_a_lapsed_license() {
    let (private, public) = license::generate_key_pair();
    let env = [
        ("DRYDOCK_LICENSE__TRUSTED_KEYS", public.as_str()),
        ("DRYDOCK_LICENSE__GRACE_DAYS", "0"),
        ("DRYDOCK_LICENSE__FREE_SEATS", "7"),
    ];
    let mut dd = Instance::init_with(Backend::Sqlite, &env).unwrap();
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let now = Utc::now();
    let terms = LicenseTerms {
        id: "L-SHORT".into(),
        licensee: "Example Corp".into(),
        seats: 3,
        issued: now - Duration::days(1),
        expires: now + Duration::seconds(2),
    };
    let document = terms.sign(&license::parse_private_key(&private).unwrap()).unwrap();
    let (status, view) = put_license(&dd, &admin, "text/plain", &document).await;
    assert_eq!((status, view["seats"].as_u64()), (StatusCode::OK, Some(3)), "{view}");

    let db = database(&dd).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let expired = license_events(&db).await.into_iter().filter(|e| e.0 == "license.expire").count();
        if expired > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the license clock did not expire the license");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let events = license_events(&db).await;
    let expire = events.iter().find(|e| e.0 == "license.expire").unwrap();
    assert_eq!((expire.1.as_str(), expire.2.as_str()), ("system", "L-SHORT"));
    assert_eq!(expire.5["seats"], json!({"before": 3, "after": 7}));
    let (_, view) = call(&dd, &admin, Method::GET, "/api/license", None).await;
    assert_eq!((view["kind"].as_str(), view["seats"].as_u64()), (Some("FAIR_SOURCE"), Some(7)), "{view}");
    assert_eq!(history(&db).await, ["fairSourceAccepted", "paidAdded L-SHORT admin@localhost", "paidExpired L-SHORT"]);
    db.pool().close().await;
    dd.stop();
}
