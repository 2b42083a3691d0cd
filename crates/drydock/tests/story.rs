//! The same story on SQLite and on PostgreSQL, against the real server over HTTP.

mod common;

use common::{ADMIN_PASSWORD, Backend, Instance, answer, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn story_postgres() {
    story(Backend::Postgres).await;
}

async fn story(backend: Backend) {
    let Some(mut dd) = Instance::init(backend) else { return };
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;

    public_routes_and_credentials(&dd).await;
    sign_in(&dd).await;
    let (alice, alice_token) = users_and_bad_input(&dd, &admin).await;
    admin_routes_refuse_plain_users(&dd, &alice_token, alice["id"].as_str().unwrap()).await;
    tokens_and_csrf(&dd, &alice_token).await;
    permissions(&dd, &admin, &alice).await;
    passwords(&dd, &admin).await;
    concurrent_creates(&dd, &admin).await;
    throttling(&dd).await;
    metrics_and_openapi(&dd, &admin, &alice_token).await;
    workspaces_and_sharing(&dd, &admin).await;
    removal(&dd, &admin).await;

    // Stop and start again: every user is still there, and sessions survive too.
    let before = user_names(&dd, &admin).await;
    dd.stop();
    dd.start().await;
    assert_eq!(user_names(&dd, &admin).await, before);
    dd.token_for("alice", "alice-password").await;

    cli_verbs(&dd).await;
    dd.stop();
}

async fn user_names(dd: &Instance, token: &str) -> Vec<String> {
    let r = dd.req(Method::GET, "/api/admin/user?maxItems=1000").bearer_auth(token).send().await.unwrap();
    let (status, body) = answer(r).await;
    assert_eq!(status, StatusCode::OK);
    body.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_string()).collect()
}

async fn public_routes_and_credentials(dd: &Instance) {
    let (status, body) = answer(dd.req(Method::GET, "/api/health").send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let (status, body) = answer(dd.req(Method::GET, "/api/system/state").send().await.unwrap()).await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("RUNNING")));
    for path in ["/api/openapi.json", "/swagger/", "/"] {
        let r = dd.req(Method::GET, path).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path} is public");
    }
    // Everything else needs credentials: 401 with the error shape.
    for (method, path) in [
        (Method::GET, "/api/user"),
        (Method::GET, "/api/user/someid"),
        (Method::GET, "/api/user/find?name=admin"),
        (Method::POST, "/api/user"),
        (Method::GET, "/api/admin/user"),
        (Method::GET, "/api/permissions/system"),
        (Method::POST, "/api/token"),
        (Method::GET, "/api/token"),
        (Method::POST, "/api/auth/logout"),
        (Method::GET, "/metrics"),
    ] {
        let (status, body) = answer(dd.req(method.clone(), path).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(body["code"], "unauthorized");
    }
    let r = dd.req(Method::GET, "/api/user").bearer_auth("ddt_not-a-real-token").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // Unknown routes are 404 in the error shape.
    let (status, body) = answer(dd.req(Method::GET, "/api/nothing-here").send().await.unwrap()).await;
    assert_eq!((status, body["code"].as_str()), (StatusCode::NOT_FOUND, Some("not_found")));
}

async fn sign_in(dd: &Instance) {
    // By name and by e-mail.
    let r = dd.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("drydock_session=dds_"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"));
    let body: Value = r.json().await.unwrap();
    assert!(body["token"].as_str().unwrap().starts_with("dds_"));
    assert_eq!(body["user"]["name"], "admin");
    assert_eq!(dd.login("admin@localhost", ADMIN_PASSWORD).await.status(), StatusCode::OK);

    // A wrong password and an unknown name get the same answer.
    let (s1, b1) = answer(dd.login("admin", "wrong-password").await).await;
    let (s2, b2) = answer(dd.login("nobody-here", "wrong-password").await).await;
    assert_eq!((s1, s2), (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED));
    assert_eq!(b1, b2);

    // The session works as a Bearer token, and sign-out ends it.
    let token = body["token"].as_str().unwrap();
    let r = dd.req(Method::GET, "/api/user").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = dd.req(Method::POST, "/api/auth/logout").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = dd.req(Method::GET, "/api/user").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Bad login bodies are 400s.
    for body in [json!({"username": "admin"}), json!({"username": "admin", "password": "x", "extra": 1}), json!([])] {
        let r = dd.req(Method::POST, "/api/auth/login").json(&body).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
    }
}

/// Creates alice (and checks every kind of bad input on the way); returns her and a session.
async fn users_and_bad_input(dd: &Instance, admin: &str) -> (Value, String) {
    let r = dd
        .req(Method::POST, "/api/user")
        .bearer_auth(admin)
        .json(&json!({"name": "alice", "email": "Alice@Example.com", "password": "alice-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let alice: Value = r.json().await.unwrap();
    assert_eq!(location, format!("/api/user/{}", alice["id"].as_str().unwrap()));
    assert_eq!(alice["email"], "alice@example.com");
    assert!(alice.get("password").is_none() && alice.get("passwordHash").is_none());
    let count = user_names(dd, admin).await.len();

    let long = "a".repeat(65);
    let long_email = format!("{}@example.com", "e".repeat(250));
    let long_password = "p".repeat(1025);
    let cases: Vec<(&str, Option<Value>, Option<&str>, &str)> = vec![
        ("malformed JSON", None, Some("application/json"), "{\"name\": "),
        ("no content type", None, None, "{\"name\":\"bob\",\"email\":\"bob@x.com\",\"password\":\"12345678\"}"),
        (
            "wrong content type",
            None,
            Some("text/plain"),
            "{\"name\":\"bob\",\"email\":\"bob@x.com\",\"password\":\"12345678\"}",
        ),
        ("empty body", None, Some("application/json"), ""),
        ("missing field", Some(json!({"name": "bob", "email": "bob@x.com"})), None, "password"),
        (
            "unknown field",
            Some(json!({"name": "bob", "email": "bob@x.com", "password": "12345678", "admin": true})),
            None,
            "admin",
        ),
        ("wrong type", Some(json!({"name": 7, "email": "bob@x.com", "password": "12345678"})), None, "name"),
        ("short name", Some(json!({"name": "bo", "email": "bob@x.com", "password": "12345678"})), None, "name"),
        ("long name", Some(json!({"name": long, "email": "bob@x.com", "password": "12345678"})), None, "name"),
        (
            "bad characters",
            Some(json!({"name": "Bob Smith", "email": "bob@x.com", "password": "12345678"})),
            None,
            "name",
        ),
        ("bad email", Some(json!({"name": "bob", "email": "bob-at-x", "password": "12345678"})), None, "email"),
        ("long email", Some(json!({"name": "bob", "email": long_email, "password": "12345678"})), None, "email"),
        ("short password", Some(json!({"name": "bob", "email": "bob@x.com", "password": "1234567"})), None, "password"),
        (
            "long password",
            Some(json!({"name": "bob", "email": "bob@x.com", "password": long_password})),
            None,
            "password",
        ),
    ];
    for (what, json_body, content_type, detail) in cases {
        let mut req = dd.req(Method::POST, "/api/user").bearer_auth(admin);
        req = match (&json_body, content_type) {
            (Some(b), _) => req.json(b),
            (None, Some(ct)) => req.header("content-type", ct).body(detail.to_string()),
            (None, None) => req.body(detail.to_string()),
        };
        let (status, body) = answer(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
        assert_eq!(body["code"], "bad_request", "{what}");
        if json_body.is_some() {
            assert!(body["message"].as_str().unwrap().contains(detail), "{what}: message names {detail}: {body}");
        }
    }
    // Taken name or e-mail: 409 saying which.
    for (body, which) in [
        (json!({"name": "alice", "email": "other@example.com", "password": "12345678"}), "name"),
        (json!({"name": "alice2", "email": "ALICE@example.com", "password": "12345678"}), "email"),
    ] {
        let (status, body) =
            answer(dd.req(Method::POST, "/api/user").bearer_auth(admin).json(&body).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(body["message"].as_str().unwrap().starts_with(which), "{body}");
    }
    // A body over 1 MiB: 413.
    let huge = json!({"name": "bob", "email": "bob@x.com", "password": "x".repeat(1 << 20)});
    let r = dd.req(Method::POST, "/api/user").bearer_auth(admin).json(&huge).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Nothing of that changed anything.
    assert_eq!(user_names(dd, admin).await.len(), count);

    // Reading users: by id, by name, by e-mail; unknown ids are 404.
    let id = alice["id"].as_str().unwrap();
    for path in
        [format!("/api/user/{id}"), "/api/user/find?name=alice".into(), "/api/user/find?email=alice@example.com".into()]
    {
        let (status, body) = answer(dd.req(Method::GET, &path).bearer_auth(admin).send().await.unwrap()).await;
        assert_eq!((status, &body["id"]), (StatusCode::OK, &alice["id"]), "{path}");
    }
    for path in ["/api/user/user-unknown", "/api/user/find?name=nobody", "/api/user/find?email=no@x.com"] {
        let r = dd.req(Method::GET, path).bearer_auth(admin).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let r = dd.req(Method::GET, "/api/user/find").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Lists page with X-Total-Count; search by part of name or e-mail, any case.
    dd.create_user(admin, "bob", "bob-password").await;
    let r = dd.req(Method::GET, "/api/admin/user?maxItems=1&skipCount=1").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "3");
    let (_, page) = answer(r).await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["name"], "alice");
    let r = dd.req(Method::GET, "/api/admin/user/find?namePart=LIC").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "1");
    let r = dd.req(Method::GET, "/api/admin/user/find?emailPart=example.com").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "2");
    let r = dd.req(Method::GET, "/api/admin/user/find?namePart=%25").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "0", "% is taken literally");
    for bad in [
        "/api/admin/user?maxItems=abc",
        "/api/admin/user?maxItems=0",
        "/api/admin/user?skipCount=-1",
        "/api/admin/user/find",
    ] {
        let (status, body) = answer(dd.req(Method::GET, bad).bearer_auth(admin).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }

    // Changing an e-mail: unique, validated, and only for manageUsers (see the 403 list).
    let (_, bob) =
        answer(dd.req(Method::GET, "/api/user/find?name=bob").bearer_auth(admin).send().await.unwrap()).await;
    let bob_path = format!("/api/user/{}", bob["id"].as_str().unwrap());
    let change =
        |email: &str| dd.req(Method::PATCH, &bob_path).bearer_auth(admin).json(&json!({ "email": email })).send();
    let (status, changed) = answer(change("Bob.New@Example.com").await.unwrap()).await;
    assert_eq!((status, changed["email"].as_str()), (StatusCode::OK, Some("bob.new@example.com")));
    let (status, body) = answer(change("alice@example.com").await.unwrap()).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("email")));
    assert_eq!(answer(change("not-an-email").await.unwrap()).await.0, StatusCode::BAD_REQUEST);
    let r = dd
        .req(Method::PATCH, "/api/user/user-nobody")
        .bearer_auth(admin)
        .json(&json!({"email": "x@y.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(answer(change("bob@example.com").await.unwrap()).await.0, StatusCode::OK);

    let token = dd.token_for("alice", "alice-password").await;
    let (status, me) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!((status, &me["name"]), (StatusCode::OK, &json!("alice")));
    (alice, token)
}

async fn admin_routes_refuse_plain_users(dd: &Instance, token: &str, own_id: &str) {
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (
            Method::POST,
            "/api/user".into(),
            Some(json!({"name": "carol", "email": "carol@x.com", "password": "12345678"})),
        ),
        (Method::DELETE, "/api/user/anything".into(), None),
        (Method::PATCH, format!("/api/user/{own_id}"), Some(json!({"email": "new@x.com"}))),
        (Method::GET, "/api/admin/user".into(), None),
        (Method::GET, "/api/admin/user/find?namePart=a".into(), None),
        (
            Method::POST,
            "/api/permissions".into(),
            Some(json!({"userId": own_id, "domainId": "system", "instanceId": null, "actions": ["manageSystem"]})),
        ),
        (Method::DELETE, format!("/api/permissions/system?user={own_id}"), None),
        (Method::PUT, "/api/user/someone-else/password".into(), Some(json!({"password": "12345678"}))),
        (Method::GET, "/metrics".into(), None),
    ];
    for (method, path, body) in routes {
        let mut req = dd.req(method.clone(), &path).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, body) = answer(req.send().await.unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    // A plain user's system permissions are empty.
    let (_, p) = answer(dd.req(Method::GET, "/api/permissions/system").bearer_auth(token).send().await.unwrap()).await;
    assert_eq!(p, json!({"userId": own_id, "domainId": "system", "instanceId": null, "actions": []}));
}

async fn tokens_and_csrf(dd: &Instance, session: &str) {
    // Create, list, use, revoke.
    let (status, created) = answer(
        dd.req(Method::POST, "/api/token").bearer_auth(session).json(&json!({"name": "laptop"})).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("ddt_"));
    let (_, list) = answer(dd.req(Method::GET, "/api/token").bearer_auth(session).send().await.unwrap()).await;
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["name"], "laptop");
    assert!(list[0].get("token").is_none(), "a listed token has no secret");
    let r = dd.req(Method::GET, "/api/user").bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for (body, field) in
        [(json!({"name": ""}), "name"), (json!({"name": "x".repeat(101)}), "name"), (json!({}), "name")]
    {
        let (status, b) =
            answer(dd.req(Method::POST, "/api/token").bearer_auth(session).json(&body).send().await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(b["message"].as_str().unwrap().contains(field));
    }
    let id = created["id"].as_str().unwrap();
    let r = dd.req(Method::DELETE, &format!("/api/token/{id}")).bearer_auth(session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = dd.req(Method::GET, "/api/user").bearer_auth(&secret).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "revocation takes effect at once");
    let r = dd.req(Method::DELETE, &format!("/api/token/{id}")).bearer_auth(session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The cookie: safe requests pass; unsafe ones need the CSRF token.
    let login: Value = dd.login("alice", "alice-password").await.json().await.unwrap();
    let cookie = format!("drydock_session={}", login["token"].as_str().unwrap());
    let csrf = login["csrfToken"].as_str().unwrap();
    let r = dd.req(Method::GET, "/api/user").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let post = || dd.req(Method::POST, "/api/token").header("cookie", &cookie).json(&json!({"name": "browser"}));
    let (status, body) = answer(post().send().await.unwrap()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"].as_str().unwrap().contains("CSRF"));
    let r = post().header("x-csrf-token", "wrong").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post().header("x-csrf-token", csrf).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn permissions(dd: &Instance, admin: &str, alice: &Value) {
    let id = alice["id"].as_str().unwrap();
    let alice_token = dd.token_for("alice", "alice-password").await;
    // Grant admin rights; alice can now administer users.
    let grant =
        json!({"userId": id, "domainId": "system", "instanceId": null, "actions": ["manageUsers", "manageSystem"]});
    let (status, body) =
        answer(dd.req(Method::POST, "/api/permissions").bearer_auth(admin).json(&grant).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["actions"], json!(["manageSystem", "manageUsers"]));
    let r = dd.req(Method::GET, "/api/admin/user").bearer_auth(&alice_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a grant takes effect at once");
    let (_, p) =
        answer(dd.req(Method::GET, "/api/permissions/system").bearer_auth(&alice_token).send().await.unwrap()).await;
    assert_eq!(p["actions"], json!(["manageSystem", "manageUsers"]));

    // Bad grants.
    for (body, status) in [
        (json!({"userId": id, "domainId": "system", "instanceId": null, "actions": ["root"]}), StatusCode::BAD_REQUEST),
        (json!({"userId": id, "domainId": "system", "instanceId": null, "actions": []}), StatusCode::BAD_REQUEST),
        (json!({"userId": id, "domainId": "galaxy", "instanceId": null, "actions": ["x"]}), StatusCode::BAD_REQUEST),
        (
            json!({"userId": id, "domainId": "system", "instanceId": "x", "actions": ["manageUsers"]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"userId": "user-nobody", "domainId": "system", "instanceId": null, "actions": ["manageUsers"]}),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let r = dd.req(Method::POST, "/api/permissions").bearer_auth(admin).json(&body).send().await.unwrap();
        assert_eq!(r.status(), status, "{body}");
    }

    // Revoke; the last holder of manageSystem keeps it.
    let r =
        dd.req(Method::DELETE, &format!("/api/permissions/system?user={id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = dd.req(Method::GET, "/api/admin/user").bearer_auth(&alice_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "a revocation takes effect at once");
    let (_, me) = answer(dd.req(Method::GET, "/api/user").bearer_auth(admin).send().await.unwrap()).await;
    let admin_id = me["id"].as_str().unwrap();
    let r = dd
        .req(Method::DELETE, &format!("/api/permissions/system?user={admin_id}"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let demote = json!({"userId": admin_id, "domainId": "system", "instanceId": null, "actions": ["manageUsers"]});
    let r = dd.req(Method::POST, "/api/permissions").bearer_auth(admin).json(&demote).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = dd.req(Method::DELETE, &format!("/api/user/{admin_id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let r = dd.req(Method::DELETE, "/api/permissions/system?user=user-nobody").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn passwords(dd: &Instance, admin: &str) {
    let bob = dd.token_for("bob", "bob-password").await;
    let other_bob_session = dd.token_for("bob", "bob-password").await;
    let (_, me) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&bob).send().await.unwrap()).await;
    let id = me["id"].as_str().unwrap();
    let path = format!("/api/user/{id}/password");
    // Own password: the current one is needed and checked.
    let r = dd
        .req(Method::PUT, &path)
        .bearer_auth(&bob)
        .json(&json!({"password": "bob-new-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let wrong = json!({"password": "bob-new-password", "currentPassword": "nope-nope"});
    let r = dd.req(Method::PUT, &path).bearer_auth(&bob).json(&wrong).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let short = json!({"password": "short", "currentPassword": "bob-password"});
    let r = dd.req(Method::PUT, &path).bearer_auth(&bob).json(&short).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let good = json!({"password": "bob-new-password", "currentPassword": "bob-password"});
    let r = dd.req(Method::PUT, &path).bearer_auth(&bob).json(&good).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    // His own session goes on; his other session ended; the new password works.
    assert_eq!(dd.req(Method::GET, "/api/user").bearer_auth(&bob).send().await.unwrap().status(), StatusCode::OK);
    let r = dd.req(Method::GET, "/api/user").bearer_auth(&other_bob_session).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(dd.login("bob", "bob-password").await.status(), StatusCode::UNAUTHORIZED);
    // An admin resets it without the current one.
    let r =
        dd.req(Method::PUT, &path).bearer_auth(admin).json(&json!({"password": "bob-password"})).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        dd.req(Method::GET, "/api/user").bearer_auth(&bob).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    dd.token_for("bob", "bob-password").await;
    let r = dd
        .req(Method::PUT, "/api/user/user-nobody/password")
        .bearer_auth(admin)
        .json(&json!({"password": "12345678"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn concurrent_creates(dd: &Instance, admin: &str) {
    let attempts = (0..10).map(|i| {
        dd.req(Method::POST, "/api/user")
            .bearer_auth(admin)
            .json(&json!({"name": "racer", "email": format!("racer{i}@example.com"), "password": "racer-password"}))
            .send()
    });
    let results = futures::future::join_all(attempts).await;
    let mut statuses: Vec<u16> = results.into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    statuses.sort();
    assert_eq!(statuses, [201, 409, 409, 409, 409, 409, 409, 409, 409, 409]);
}

async fn throttling(dd: &Instance) {
    dd.create_user(&dd.token_for("admin", ADMIN_PASSWORD).await, "carol", "carol-password").await;
    // Failures count per account, however it is named.
    for login in ["carol", "carol@example.com", "carol", "CAROL@example.com", "carol"] {
        assert_eq!(dd.login(login, "wrong-password").await.status(), StatusCode::UNAUTHORIZED);
    }
    // The sixth try is refused before the password is even checked, with Retry-After.
    for (login, password) in [("carol", "wrong-password"), ("carol@example.com", "carol-password")] {
        let r = dd.login(login, password).await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=30).contains(&retry), "Retry-After {retry}");
        let (_, body) = answer(r).await;
        assert_eq!(body["code"], "too_many_requests");
    }
    // Other accounts are not affected.
    assert_eq!(dd.login("bob", "bob-password").await.status(), StatusCode::OK);
}

async fn metrics_and_openapi(dd: &Instance, admin: &str, plain: &str) {
    let r = dd.req(Method::GET, "/metrics").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text = r.text().await.unwrap();
    assert!(text.contains("drydock_users_total "), "{text}");
    assert!(
        text.contains(r#"drydock_http_requests_total{method="GET",route="/api/user/{id}",status="200"}"#),
        "{text}"
    );
    assert!(text.contains("drydock_http_request_duration_seconds_bucket"));
    assert!(!text.contains("route=\"/api/user/user"), "raw paths never become labels");
    assert_eq!(
        dd.req(Method::GET, "/metrics").bearer_auth(plain).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );

    let (_, doc) = answer(dd.req(Method::GET, "/api/openapi.json").send().await.unwrap()).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/auth/login",
        "/api/auth/logout",
        "/api/user",
        "/api/user/{id}",
        "/api/user/find",
        "/api/user/{id}/password",
        "/api/admin/user",
        "/api/admin/user/find",
        "/api/permissions",
        "/api/permissions/system",
        "/api/token",
        "/api/token/{id}",
        "/api/health",
        "/api/system/state",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} is documented");
    }
}

async fn removal(dd: &Instance, admin: &str) {
    let dave = dd.create_user(admin, "dave", "dave-password").await;
    let session = dd.token_for("dave", "dave-password").await;
    let (_, token) = answer(
        dd.req(Method::POST, "/api/token").bearer_auth(&session).json(&json!({"name": "ci"})).send().await.unwrap(),
    )
    .await;
    let token = token["token"].as_str().unwrap().to_string();
    let id = dave["id"].as_str().unwrap();
    let r = dd.req(Method::DELETE, &format!("/api/user/{id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    for secret in [&session, &token] {
        let r = dd.req(Method::GET, "/api/user").bearer_auth(secret).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "removing a user revokes their sessions and tokens");
    }
    let r = dd.req(Method::GET, &format!("/api/user/{id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = dd.req(Method::DELETE, &format!("/api/user/{id}")).bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

async fn cli_verbs(dd: &Instance) {
    let ok = |args: &[&str]| {
        let out = dd.cli(args);
        assert!(out.status.success(), "drydock {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let out = ok(&["user", "add", "erin", "--email", "erin@example.com", "--password", "erin-password"]);
    assert!(out.contains("created user erin"), "{out}");
    let out = ok(&["user", "add", "frank", "--email", "frank@example.com", "--admin"]);
    let generated = out.lines().find_map(|l| l.strip_prefix("password: ")).unwrap().to_string();
    let frank = dd.token_for("frank", &generated).await;
    let r = dd.req(Method::GET, "/api/admin/user").bearer_auth(&frank).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "--admin grants the system actions");

    let list = ok(&["user", "list"]);
    assert!(list.contains("erin@example.com") && list.contains("frank"), "{list}");
    let json: Value = serde_json::from_str(&ok(&["user", "list", "--json", "--search", "fra"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1);
    let shown: Value = serde_json::from_str(&ok(&["user", "show", "erin", "--json"])).unwrap();
    assert_eq!(shown["email"], "erin@example.com");
    let by_id = ok(&["user", "show", shown["id"].as_str().unwrap()]);
    assert!(by_id.contains("erin@example.com"));
    let out = dd.cli(&["user", "show", "nobody"]);
    assert!(!out.status.success() && text(&out).contains("nobody"));

    ok(&["user", "passwd", "erin", "--password", "erin-new-password"]);
    dd.token_for("erin", "erin-new-password").await;

    // Removal asks; without a terminal and without --yes it refuses and changes nothing.
    let out = dd.cli(&["user", "remove", "erin"]);
    assert!(!out.status.success() && text(&out).contains("--yes"), "{}", text(&out));
    dd.token_for("erin", "erin-new-password").await;
    ok(&["user", "remove", "erin", "--yes"]);
    assert_eq!(dd.login("erin", "erin-new-password").await.status(), StatusCode::UNAUTHORIZED);

    // A token for the account the CLI acts as: alone on stdout.
    let token = ok(&["token", "create", "scripts"]).trim().to_string();
    assert!(token.starts_with("ddt_"), "{token}");
    let (_, me) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&token).send().await.unwrap()).await;
    assert_eq!(me["name"], "admin");

    // From elsewhere: --url and DRYDOCK_TOKEN, as frank.
    let out = dd.command(&["user", "list", "--url", &dd.url]).env("DRYDOCK_TOKEN", &frank).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = dd.command(&["token", "create", "x", "--url", &dd.url]).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("DRYDOCK_TOKEN"));

    let status: Value = serde_json::from_str(&ok(&["status", "--json"])).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["url"], dd.url.as_str());
    let backend = if dd.backend == Backend::Sqlite { "sqlite" } else { "postgres" };
    assert_eq!(status["database"], backend);
    let version: Value = serde_json::from_str(&ok(&["version", "--json"])).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["instanceVersion"], env!("CARGO_PKG_VERSION"));
}

/// Two administrators revoking each other at once: exactly one wins, and one holder of
/// `manageSystem` always remains.
async fn last_admin_race(backend: Backend) {
    let Some(mut dd) = Instance::init(backend) else { return };
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    for round in 0..5 {
        let name = format!("second{round}");
        let other = dd.create_user(&admin, &name, "second-password").await;
        let other_id = other["id"].as_str().unwrap().to_string();
        let grant = json!({"userId": other_id, "domainId": "system", "instanceId": null, "actions": ["manageSystem", "manageUsers"]});
        let r = dd.req(Method::POST, "/api/permissions").bearer_auth(&admin).json(&grant).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let other_token = dd.token_for(&name, "second-password").await;
        let (_, me) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&admin).send().await.unwrap()).await;
        let admin_id = me["id"].as_str().unwrap().to_string();

        let (a, b) = tokio::join!(
            dd.req(Method::DELETE, &format!("/api/permissions/system?user={other_id}")).bearer_auth(&admin).send(),
            dd.req(Method::DELETE, &format!("/api/permissions/system?user={admin_id}"))
                .bearer_auth(&other_token)
                .send(),
        );
        let mut statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        statuses.sort();
        // Either one revocation wins (204) and the other finds the last holder (409), or the
        // second request already lost its right to revoke (403).
        assert!(statuses == [204, 409] || statuses == [204, 403], "round {round}: {statuses:?}");
        let (_, p) =
            answer(dd.req(Method::GET, "/api/permissions/system").bearer_auth(&admin).send().await.unwrap()).await;
        if p["actions"].as_array().unwrap().is_empty() {
            // The other one won: it hands the rights back, and loses its own, for the next round.
            let back = json!({"userId": admin_id, "domainId": "system", "instanceId": null, "actions": ["manageSystem", "manageUsers"]});
            let r =
                dd.req(Method::POST, "/api/permissions").bearer_auth(&other_token).json(&back).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let path = format!("/api/permissions/system?user={other_id}");
            let r = dd.req(Method::DELETE, &path).bearer_auth(&admin).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::NO_CONTENT);
        }
    }
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_admin_race_sqlite() {
    last_admin_race(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_admin_race_postgres() {
    last_admin_race(Backend::Postgres).await;
}

/// Workspaces in the store: Codenvy's config kept whole, names unique per owner, and each
/// route checking its action (without `read`, a workspace does not exist for the caller).
async fn workspaces_and_sharing(dd: &Instance, admin: &str) {
    let alice = dd.token_for("alice", "alice-password").await;
    let bob = dd.token_for("bob", "bob-password").await;
    let (_, bob_user) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&bob).send().await.unwrap()).await;
    let bob_id = bob_user["id"].as_str().unwrap().to_string();
    let config = json!({
        "name": "api-dev", "defaultEnv": "default", "description": "kept as given",
        "projects": [{"name": "api", "source": {"location": "https://example.com/api.git"}}],
        "environments": {"default": {
            "recipe": {"type": "dockerimage", "location": "drydock-test/busybox"},
            "machines": {"dev": {"attributes": {"memoryLimitBytes": 536870912},
                                  "servers": {"web": {"port": "8080/tcp", "protocol": "http"}}}}}},
        "commands": [{"name": "build", "commandLine": "make", "type": "custom"}]
    });
    let create =
        |token: &str, body: &Value| dd.req(Method::POST, "/api/workspace").bearer_auth(token).json(body).send();
    let (status, ws) = answer(create(&alice, &config).await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    assert!(ws["id"].as_str().unwrap().starts_with("wksp-"));
    assert_eq!((ws["namespace"].as_str(), ws["status"].as_str()), (Some("alice"), Some("STOPPED")));
    assert_eq!(ws["config"], config, "the config comes back whole, unused fields included");
    assert!(ws["attributes"]["created"].is_string());
    let id = ws["id"].as_str().unwrap().to_string();

    // Names are unique per owner; bad configs are 400s naming the field.
    let (status, body) = answer(create(&alice, &config).await.unwrap()).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::CONFLICT, Some("name")));
    assert_eq!(create(&bob, &config).await.unwrap().status(), StatusCode::CREATED, "another owner may use the name");
    let mut bad = config.clone();
    bad["defaultEnv"] = "nope".into();
    let mut compose = config.clone();
    compose["name"] = "composed".into();
    compose["environments"]["default"]["recipe"] = json!({"type": "compose", "contentType": "application/x-yaml",
        "content": "services:\n  dev:\n    image: x\n    ports: ['80:80']\n"});
    compose["environments"]["default"]["machines"] = json!({});
    let mut no_name = config.clone();
    no_name.as_object_mut().unwrap().remove("name");
    for (body, needle) in [(bad, "defaultEnv"), (compose, "'ports'"), (no_name, "name")] {
        let (status, answer_body) = answer(create(&alice, &body).await.unwrap()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer_body}");
        assert!(answer_body["message"].as_str().unwrap().contains(needle), "{answer_body}");
    }

    // By id and by namespace:name; others do not even see it.
    for key in [id.clone(), "alice:api-dev".to_string()] {
        let (status, got) =
            answer(dd.req(Method::GET, &format!("/api/workspace/{key}")).bearer_auth(&alice).send().await.unwrap())
                .await;
        assert_eq!((status, got["id"].as_str()), (StatusCode::OK, Some(id.as_str())));
    }
    let get = |token: &str| dd.req(Method::GET, &format!("/api/workspace/{id}")).bearer_auth(token).send();
    assert_eq!(get(&bob).await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        dd.req(Method::GET, "/api/workspace/wksp-nothing").bearer_auth(&alice).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
    let r = dd.req(Method::GET, "/api/workspace?status=RUNNING").bearer_auth(&alice).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "0");
    let r = dd.req(Method::GET, "/api/workspace?status=STOPPED").bearer_auth(&alice).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "1");
    assert_eq!(
        dd.req(Method::GET, "/api/workspace?status=NAPPING").bearer_auth(&alice).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let r = dd.req(Method::GET, "/api/workspace").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.headers()["x-total-count"], "2", "administrators list every workspace");

    // Sharing: read only, then configure; each route checks its own action.
    let share = |actions: Value| {
        dd.req(Method::POST, "/api/permissions")
            .bearer_auth(&alice)
            .json(&json!({"userId": bob_id, "domainId": "workspace", "instanceId": id, "actions": actions}))
            .send()
    };
    assert_eq!(share(json!(["read"])).await.unwrap().status(), StatusCode::OK);
    assert_eq!(get(&bob).await.unwrap().status(), StatusCode::OK);
    let update = |token: &str| {
        let mut changed = config.clone();
        changed["description"] = "changed".into();
        dd.req(Method::PUT, &format!("/api/workspace/{id}")).bearer_auth(token).json(&changed).send()
    };
    assert_eq!(update(&bob).await.unwrap().status(), StatusCode::FORBIDDEN);
    let r = dd
        .req(Method::GET, &format!("/api/permissions/workspace/all?instance={id}"))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(share(json!(["read", "configure"])).await.unwrap().status(), StatusCode::OK);
    let (status, updated) = answer(update(&bob).await.unwrap()).await;
    assert_eq!((status, updated["config"]["description"].as_str()), (StatusCode::OK, Some("changed")));
    let (_, mine) = answer(
        dd.req(Method::GET, &format!("/api/permissions/workspace?instance={id}"))
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mine["actions"], json!(["read", "configure"]));
    let (_, all) = answer(
        dd.req(Method::GET, &format!("/api/permissions/workspace/all?instance={id}"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    assert_eq!(share(json!(["fly"])).await.unwrap().status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        dd.req(Method::DELETE, &format!("/api/workspace/{id}")).bearer_auth(&bob).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let r = dd
        .req(Method::DELETE, &format!("/api/permissions/workspace?instance={id}&user={bob_id}"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&bob).await.unwrap().status(), StatusCode::NOT_FOUND, "unshared: gone for bob");

    // Stacks: administrators offer them, everyone creates from them.
    let stack = json!({"name": "busybox-dev", "description": "A shell", "tags": ["kept"], "workspaceConfig": config});
    let post_stack =
        |token: &str, body: &Value| dd.req(Method::POST, "/api/stack").bearer_auth(token).json(body).send();
    let (status, created) = answer(post_stack(admin, &stack).await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["tags"], json!(["kept"]));
    let stack_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(answer(post_stack(admin, &stack).await.unwrap()).await.0, StatusCode::CONFLICT);
    assert_eq!(post_stack(&alice, &stack).await.unwrap().status(), StatusCode::FORBIDDEN);
    let mut bad_stack = stack.clone();
    bad_stack["name"] = "broken".into();
    bad_stack["workspaceConfig"]["defaultEnv"] = "nope".into();
    let (status, body) = answer(post_stack(admin, &bad_stack).await.unwrap()).await;
    assert_eq!((status, body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("workspaceConfig.defaultEnv")));
    let (status, stacks) = answer(dd.req(Method::GET, "/api/stack").bearer_auth(&alice).send().await.unwrap()).await;
    assert_eq!((status, stacks.as_array().unwrap().len()), (StatusCode::OK, 1));
    let from_stack = |body: Value, stack: &str| {
        dd.req(Method::POST, &format!("/api/workspace?stack={stack}")).bearer_auth(&alice).json(&body).send()
    };
    let (status, made) = answer(from_stack(json!({"name": "from-stack"}), &stack_id).await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    assert_eq!((made["config"]["name"].as_str(), made["namespace"].as_str()), (Some("from-stack"), Some("alice")));
    assert_eq!(made["config"]["environments"], config["environments"]);
    assert_eq!(from_stack(json!({"name": "x"}), "stack-nothing").await.unwrap().status(), StatusCode::NOT_FOUND);
    assert_eq!(
        from_stack(json!({"name": "y", "extra": 1}), &stack_id).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let made_id = made["id"].as_str().unwrap();
    assert_eq!(
        dd.req(Method::DELETE, &format!("/api/workspace/{made_id}")).bearer_auth(&alice).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        dd.req(Method::DELETE, &format!("/api/stack/{stack_id}")).bearer_auth(&alice).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        dd.req(Method::DELETE, &format!("/api/stack/{stack_id}")).bearer_auth(admin).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );

    // A user who owns workspaces is not removed by accident.
    let (_, alice_user) = answer(dd.req(Method::GET, "/api/user").bearer_auth(&alice).send().await.unwrap()).await;
    let r = dd
        .req(Method::DELETE, &format!("/api/user/{}", alice_user["id"].as_str().unwrap()))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    let (status, body) = answer(r).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("api-dev"), "{body}");

    // Deleting: the owner may; then it is gone. The admin removes bob's by role.
    assert_eq!(
        dd.req(Method::DELETE, &format!("/api/workspace/{id}")).bearer_auth(&alice).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(get(&alice).await.unwrap().status(), StatusCode::NOT_FOUND);
    let r = dd.req(Method::DELETE, "/api/workspace/bob:api-dev").bearer_auth(admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}
