//! The audit log against a real server, engine and database: every security-relevant action
//! leaves its event with the right actor and no secret; the filters; the exports are valid
//! JSON Lines and CSV; editing or deleting a row in the database is caught by verify.

mod common;

use std::time::{Duration, Instant};

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Every event of the instance, oldest first.
async fn all_events(dd: &Instance, token: &str) -> Vec<Value> {
    let (status, events) = call(dd, token, Method::GET, "/api/audit/events?maxItems=1000", None).await;
    assert_eq!(status, StatusCode::OK, "{events}");
    let mut events = events.as_array().unwrap().clone();
    events.reverse();
    events
}

/// The events of one action.
fn of<'a>(events: &'a [Value], action: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["action"] == action).collect()
}

/// Waits until the backup the API started has ended.
async fn backup_ended(dd: &Instance, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, runs) = call(dd, token, Method::GET, "/api/system/backups", None).await;
        if runs.as_array().is_some_and(|r| r.iter().any(|run| run["result"] != "running")) {
            return;
        }
        assert!(Instant::now() < deadline, "the backup did not end: {runs}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn verify(dd: &Instance, token: &str) -> Value {
    let (status, v) = call(dd, token, Method::GET, "/api/audit/verify", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// Events matching a query: the total (`X-Total-Count`) and the page.
async fn count(dd: &Instance, token: &str, query: &str) -> (usize, Vec<Value>) {
    let r = dd.req(Method::GET, &format!("/api/audit/events?{query}")).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{query}");
    let total: usize = r.headers()["x-total-count"].to_str().unwrap().parse().unwrap();
    (total, r.json().await.unwrap())
}

/// A minimal RFC 4180 reader: rows of fields.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(!quoted && field.is_empty() && row.is_empty(), "the CSV ends mid-row");
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_an_event_and_the_chain_catches_edits() {
    let Some((dd, _guard, image)) = docker_instance().await else { return };
    let admin = dd.admin_token();

    // Signing in and out: a failure (with the client's address), a success, a sign-out.
    assert_eq!(dd.login("admin", "wrong-password-1").await.status(), StatusCode::UNAUTHORIZED);
    let session = dd.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(session.status(), StatusCode::OK);
    let session: Value = session.json().await.unwrap();
    let session_secret = session["token"].as_str().unwrap().to_string();
    let r = dd.req(Method::POST, "/api/auth/logout").bearer_auth(&session_secret).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    // Users: created, changed (e-mail, password), given and stripped of admin rights.
    let carol = dd.create_user(&admin, "carol", "carol-password-1").await;
    let carol_id = carol["id"].as_str().unwrap().to_string();
    let patch = json!({"email": "carol.new@example.com"});
    assert_eq!(call(&dd, &admin, Method::PATCH, &format!("/api/user/{carol_id}"), Some(patch)).await.0, StatusCode::OK);
    let password = json!({"password": "carol-password-2"});
    let (status, _) = call(&dd, &admin, Method::PUT, &format!("/api/user/{carol_id}/password"), Some(password)).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let grant = json!({"userId": carol_id, "domainId": "system", "instanceId": null, "actions": ["manageUsers"]});
    assert_eq!(call(&dd, &admin, Method::POST, "/api/permissions", Some(grant)).await.0, StatusCode::OK);
    let (status, _) =
        call(&dd, &admin, Method::DELETE, &format!("/api/permissions/system?user={carol_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Tokens: carol makes one and revokes it.
    let carol_token = dd.token_for("carol", "carol-password-2").await;
    let (status, token) = call(&dd, &carol_token, Method::POST, "/api/token", Some(json!({"name": "laptop"}))).await;
    assert_eq!(status, StatusCode::CREATED, "{token}");
    let token_secret = token["token"].as_str().unwrap().to_string();
    let (status, _) =
        call(&dd, &carol_token, Method::DELETE, &format!("/api/token/{}", token["id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Limits: set and reset.
    let limits = json!({"accountId": carol_id, "resources": [{"type": "workspace", "amount": 3, "unit": "item"}]});
    assert_eq!(call(&dd, &admin, Method::POST, "/api/resource/free", Some(limits)).await.0, StatusCode::CREATED);
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/resource/free/{carol_id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A workspace's life: created, configured, shared and unshared, started, used over
    // `workspace ssh`, snapshotted, stopped, deleted.
    let (status, ws) =
        call(&dd, &admin, Method::POST, "/api/workspace", Some(small_workspace("audited", &image))).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let id = ws["id"].as_str().unwrap().to_string();
    let mut config = ws["config"].clone();
    config["description"] = json!("changed for the audit");
    assert_eq!(call(&dd, &admin, Method::PUT, &format!("/api/workspace/{id}"), Some(config)).await.0, StatusCode::OK);
    let share = json!({"userId": carol_id, "domainId": "workspace", "instanceId": id, "actions": ["read", "use"]});
    assert_eq!(call(&dd, &admin, Method::POST, "/api/permissions", Some(share)).await.0, StatusCode::OK);
    let unshare = format!("/api/permissions/workspace?instance={id}&user={carol_id}");
    assert_eq!(call(&dd, &admin, Method::DELETE, &unshare, None).await.0, StatusCode::NO_CONTENT);
    let (status, _) = call(&dd, &admin, Method::POST, &format!("/api/workspace/{id}/runtime"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled(&dd, &admin, &id).await, "RUNNING");
    let mut ssh =
        dd.command(&[]).args(["workspace", "ssh", "audited"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(&mut ssh.stdin.take().unwrap(), b"exit\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ssh.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "ssh did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = call(&dd, &admin, Method::POST, &format!("/api/workspace/{id}/snapshot"), None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{id}/runtime"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(settled(&dd, &admin, &id).await, "STOPPED");
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Maintenance on and off; a backup; carol removed.
    let on = json!({"message": "back soon"});
    assert_eq!(call(&dd, &admin, Method::POST, "/api/system/maintenance", Some(on)).await.0, StatusCode::OK);
    assert_eq!(call(&dd, &admin, Method::DELETE, "/api/system/maintenance", None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&dd, &admin, Method::POST, "/api/system/backup", None).await.0, StatusCode::ACCEPTED);
    backup_ended(&dd, &admin).await;
    assert_eq!(
        call(&dd, &admin, Method::DELETE, &format!("/api/user/{carol_id}"), None).await.0,
        StatusCode::NO_CONTENT
    );

    let events = all_events(&dd, &admin).await;
    let expect = |action: &str, actor: &str, target_part: &str| {
        let found = of(&events, action);
        assert!(
            found.iter().any(|e| e["actorName"] == actor && e["targetName"].as_str().unwrap().contains(target_part)),
            "no {action} by {actor} on {target_part}: {found:#?}"
        );
    };
    expect("license.accept", "cli", "Fair Source");
    expect("user.create", "cli", "admin");
    expect("token.create", "cli", "drydock CLI");
    let failed: Vec<_> = of(&events, "auth.signin").into_iter().filter(|e| e["outcome"] == "failure").collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["client"], "127.0.0.1", "the client's address: {failed:#?}");
    assert_eq!(failed[0]["changes"]["reason"], "wrong password");
    assert!(of(&events, "auth.signin").iter().any(|e| e["outcome"] == "success" && e["actorName"] == "admin"));
    expect("auth.signout", "admin", "admin");
    expect("user.create", "admin", "carol");
    let email = of(&events, "user.update").into_iter().find(|e| e["changes"].get("email").is_some()).unwrap();
    assert_eq!(email["changes"]["email"], json!({"before": "carol@example.com", "after": "carol.new@example.com"}));
    let password = of(&events, "user.update").into_iter().find(|e| e["changes"].get("password").is_some()).unwrap();
    assert_eq!(password["changes"]["password"], "changed");
    let grants = of(&events, "permission.grant");
    assert!(grants.iter().any(|e| e["changes"]["domain"] == "system"
        && e["changes"]["actions"] == json!({"before": [], "after": ["manageUsers"]})));
    expect("permission.revoke", "admin", "carol");
    expect("token.create", "carol", "laptop");
    expect("token.revoke", "carol", "laptop");
    expect("limits.update", "admin", "carol");
    expect("limits.reset", "admin", "carol");
    for action in [
        "workspace.create",
        "workspace.update",
        "workspace.start",
        "workspace.snapshot",
        "workspace.stop",
        "workspace.delete",
    ] {
        expect(action, "admin", "admin:audited");
    }
    let update = &of(&events, "workspace.update")[0];
    assert_eq!(update["changes"]["changedParts"], json!(["description"]));
    assert!(grants.iter().any(|e| e["changes"]["domain"] == "workspace"
        && e["changes"]["workspace"] == "admin:audited"
        && e["changes"]["actions"]["after"] == json!(["read", "use"])));
    assert!(of(&events, "permission.revoke").iter().any(|e| e["changes"]["domain"] == "workspace"));
    expect("ssh.open", "admin", "admin:audited");
    expect("ssh.close", "admin", "admin:audited");
    expect("maintenance.on", "admin", "");
    expect("maintenance.off", "admin", "");
    expect("backup.start", "admin", "api");
    let finished = of(&events, "backup.finish");
    assert!(finished.iter().any(|e| e["outcome"] == "success" && e["actorName"] == "admin"), "{finished:#?}");
    expect("user.delete", "admin", "carol");
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>(), "one chain, no gaps");

    // No secret anywhere in the log.
    let r = dd.req(Method::GET, "/api/audit/events/export?format=jsonl").bearer_auth(&admin).send().await.unwrap();
    let status = r.status();
    let jsonl = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK);
    for secret in [
        ADMIN_PASSWORD,
        "wrong-password-1",
        "carol-password-1",
        "carol-password-2",
        &session_secret,
        &token_secret,
        &admin,
    ] {
        assert!(!jsonl.contains(secret), "a secret is in the audit log");
    }
    assert!(!jsonl.contains("argon2"), "a password hash is in the audit log");

    // JSON Lines: one event a line, the same as the API lists.
    let lines: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert_eq!(lines.len(), events.len());
    assert_eq!(lines, events);
    // CSV: a header and one row an event, every row with every column.
    let r = dd.req(Method::GET, "/api/audit/events/export?format=csv").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    let rows = parse_csv(&r.text().await.unwrap());
    assert_eq!(rows[0].join(","), drydock_core::audit_log::CSV_HEADER);
    assert_eq!(rows.len(), events.len() + 1);
    assert!(rows.iter().all(|r| r.len() == rows[0].len()));
    for (row, event) in rows[1..].iter().zip(&events) {
        assert_eq!(row[0], event["seq"].to_string());
        assert_eq!(row[5], event["action"].as_str().unwrap());
        assert_eq!(serde_json::from_str::<Value>(&row[10]).unwrap(), event["changes"]);
    }
    let r = dd.req(Method::GET, "/api/audit/events/export?format=xml").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // The filters, with the total in X-Total-Count.
    let (total, page) = count(&dd, &admin, "actor=carol").await;
    assert_eq!(total, events.iter().filter(|e| e["actorName"] == "carol").count());
    assert!(page.iter().all(|e| e["actorName"] == "carol") && total >= 3);
    let (total, page) = count(&dd, &admin, "action=workspace.&maxItems=2").await;
    assert_eq!(total, events.iter().filter(|e| e["action"].as_str().unwrap().starts_with("workspace.")).count());
    assert_eq!(page.len(), 2);
    let (total, _) = count(&dd, &admin, "target=audited").await;
    assert!(total >= 7);
    let (total, _) = count(&dd, &admin, "since=2000-01-01&until=2000-01-02").await;
    assert_eq!(total, 0);
    let (status, body) = call(&dd, &admin, Method::GET, "/api/audit/events?since=yesterday", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("since"), "{body}");
    // Plain users see none of it.
    let dave = dd.create_user(&admin, "dave", "dave-password-1").await;
    let dave_token = dd.token_for("dave", "dave-password-1").await;
    for path in ["/api/audit/events", "/api/audit/verify", "/api/audit/events/export"] {
        assert_eq!(call(&dd, &dave_token, Method::GET, path, None).await.0, StatusCode::FORBIDDEN, "{path}");
    }
    assert!(dave["id"].is_string());

    // The dashboard's page: the filters, the verification.
    let browser = browser_like();
    assert!(sign_in(&dd, &browser, "admin", ADMIN_PASSWORD).await.status().is_redirection());
    let page = |query: &str| {
        let url = format!("{}/admin/audit?{query}", dd.url);
        let browser = browser.clone();
        async move {
            let r = browser.get(url).send().await.unwrap();
            (r.status(), r.text().await.unwrap())
        }
    };
    let (status, html) = page("actor=carol&action=token.").await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("token.create") && html.contains("token.revoke") && html.contains("laptop"), "{html}");
    assert!(!html.contains("user.delete"), "the filter applies");
    let (status, html) = page("since=someday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(html.contains("id=\"audit-error\"") && html.contains("since"), "{html}");
    let (_, html) = page("verify=1").await;
    assert!(html.contains("data-state=\"intact\""), "{html}");
    let dave_browser = browser_like();
    assert!(sign_in(&dd, &dave_browser, "dave", "dave-password-1").await.status().is_redirection());
    let r = dave_browser.get(format!("{}/admin/audit", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // The chain holds, and an edit or a deletion in the database breaks it where it happened.
    let v = verify(&dd, &admin).await;
    assert_eq!(v["intact"], true, "{v}");
    let out = dd.cli(&["audit", "verify"]);
    assert!(out.status.success() && text(&out).contains("The audit log is intact"), "{}", text(&out));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dd.sqlite_path().display())).await.unwrap();
    let victim = of(&events, "user.delete")[0]["seq"].as_i64().unwrap();
    sqlx::query("UPDATE audit_events SET actor_name = 'nobody' WHERE seq = ?")
        .bind(victim)
        .execute(&pool)
        .await
        .unwrap();
    let v = verify(&dd, &admin).await;
    assert_eq!((v["intact"].clone(), v["broken"]["seq"].as_i64()), (json!(false), Some(victim)), "{v}");
    assert!(v["broken"]["reason"].as_str().unwrap().contains("changed"), "{v}");
    let (_, html) = page("verify=1").await;
    assert!(html.contains("data-state=\"broken\"") && html.contains(&format!("breaks at event {victim}")), "{html}");
    let out = dd.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(&format!("breaks at event {victim}: its content does not match")), "{}", text(&out));
    sqlx::query("UPDATE audit_events SET actor_name = 'admin' WHERE seq = ?")
        .bind(victim)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(verify(&dd, &admin).await["intact"], true);
    let gone = victim - 3;
    sqlx::query("DELETE FROM audit_events WHERE seq = ?").bind(gone).execute(&pool).await.unwrap();
    let v = verify(&dd, &admin).await;
    assert_eq!((v["intact"].clone(), v["broken"]["seq"].as_i64()), (json!(false), Some(gone)), "{v}");
    assert!(v["broken"]["reason"].as_str().unwrap().contains("deleted"), "{v}");
    pool.close().await;
}
