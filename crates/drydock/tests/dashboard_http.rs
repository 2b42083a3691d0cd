//! The dashboard over plain HTTP: who sees which page with which status, CSRF, escaping.
//! (The browser tests in browser.rs drive the same pages in Chromium.)

mod common;

use common::workspace_story::{create, start};
use common::{
    ADMIN_PASSWORD, Backend, Instance, browser_like, call, docker_instance, field_value, sign_in, small_workspace,
};
use reqwest::{Method, StatusCode};
use serde_json::Value;

#[tokio::test]
async fn pages_answer_with_the_right_status() {
    let mut dd = Instance::init(Backend::Sqlite).unwrap();
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    dd.create_user(&admin, "plain", "plain-password").await;

    // Signed out: the sign-in page at /, and a redirect there from the other pages.
    let visitor = browser_like();
    let r = visitor.get(format!("{}/", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
    assert!(r.text().await.unwrap().contains("id=\"signin\""));
    for path in ["/account", "/admin/users", "/admin/users/new"] {
        let r = visitor.get(format!("{}{path}", dd.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()["location"], "/");
    }

    // A wrong password: the form again, with the error in place and status 401.
    let r = sign_in(&dd, &visitor, "plain", "wrong-password").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.text().await.unwrap().contains("id=\"signin-error\""));
    // A sign-in post without the form's token is refused.
    let r = visitor
        .post(format!("{}/login", dd.url))
        .form(&[("username", "plain"), ("password", "plain-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A plain user: the 403 page (not a redirect) on Administration, no admin link.
    let plain = browser_like();
    assert_eq!(sign_in(&dd, &plain, "plain", "plain-password").await.status(), StatusCode::SEE_OTHER);
    let home = plain.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("id=\"nav-workspaces\"") && !home.contains("id=\"nav-admin\""));
    for path in ["/admin/users", "/admin/users/table", "/admin/users/new"] {
        let r = plain.get(format!("{}{path}", dd.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("id=\"error-title\"") && page.contains("id=\"nav-workspaces\""),
            "a 403 page with the navigation"
        );
    }
    // Unknown pages: the 404 page; unknown API routes stay JSON.
    let r = plain.get(format!("{}/no/such/page", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.text().await.unwrap().contains("id=\"error-title\""));
    let r = plain.get(format!("{}/api/no/such/route", dd.url)).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "application/json");

    // The administrator: a post without the CSRF token changes nothing and gets 403.
    let admin_browser = browser_like();
    sign_in(&dd, &admin_browser, "admin", ADMIN_PASSWORD).await;
    let form = [("name", "mallory"), ("email", "mallory@example.com"), ("password", "mallory-password")];
    let r = admin_browser.post(format!("{}/admin/users", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = admin_browser
        .post(format!("{}/admin/users", dd.url))
        .header("x-csrf-token", "not-the-token")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let list = admin_browser.get(format!("{}/admin/users", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(!list.contains("mallory"));
    // With the token it works, and lands on the new user's page with a flash message.
    let csrf = field_value(&list, "csrf").unwrap();
    let mut with_token = form.to_vec();
    with_token.push(("csrf", &csrf));
    let r = admin_browser.post(format!("{}/admin/users", dd.url)).form(&with_token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/admin/users/user"), "{location}");
    let page = admin_browser.get(format!("{}{location}", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("User mallory created."), "flash shown once");
    let again = admin_browser.get(format!("{}{location}", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(!again.contains("User mallory created."), "and only once");

    // Typed text is escaped wherever it is shown.
    let q = "<script>alert(1)</script>";
    let r = admin_browser.get(format!("{}/admin/users", dd.url)).query(&[("q", q)]).send().await.unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains(q), "search text is escaped");
    assert!(body.contains("&#60;script&#62;alert(1)&#60;/script&#62;"), "and shown as typed");
    dd.stop();
}

/// When the database goes away under a running server, pages answer with the 500 page and
/// the API with a 500 body, and neither shows anything internal.
#[tokio::test]
async fn server_errors_show_nothing_internal() {
    let Some(mut dd) = Instance::init(Backend::Postgres) else { return };
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let browser = browser_like();
    sign_in(&dd, &browser, "admin", ADMIN_PASSWORD).await;
    let r = browser.get(format!("{}/account", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Both credentials are now cached, so the failures below are the user list's own.
    let db = dd.db.as_ref().unwrap();
    let server = common::postgres_url().unwrap();
    common::psql(&server, &format!("DROP DATABASE {} WITH (FORCE)", db.name));

    let r = browser.get(format!("{}/admin/users", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let page = r.text().await.unwrap();
    assert!(page.contains("id=\"error-title\"") && page.contains("Something went wrong"), "{page}");
    let r = dd.req(reqwest::Method::GET, "/api/admin/user").bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = r.text().await.unwrap();
    for text in [page.as_str(), body.as_str()] {
        let lower = text.to_lowercase();
        for internal in ["database", "sqlx", "postgres", "select", "does not exist", "connection"] {
            assert!(!lower.contains(internal), "'{internal}' leaked: {text}");
        }
    }
    assert!(body.contains("\"code\":\"internal\""), "{body}");

    // A session that was never checked cannot be checked now: an error page, not a sign-in.
    let fresh = browser_like();
    let r = fresh
        .get(format!("{}/account", dd.url))
        .header("cookie", "drydock_session=dds_unchecked")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

/// The part of a page after `start`, up to the next `end`.
fn between<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let at = page.find(start).unwrap_or_else(|| panic!("'{start}' is on the page: {page}"));
    let rest = &page[at + start.len()..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

fn gib(bytes: &Value) -> f64 {
    bytes.as_u64().unwrap() as f64 / f64::from(1u32 << 30)
}

/// Administration → Nodes on the default Docker runtime: the engine is the one node, with
/// its memory and the workspace running on it; Drain (after its confirmation) and Activate
/// say that nodes need Swarm and change nothing; a plain user gets the 403 page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_page_shows_the_single_engine() {
    let Some((dd, _guard, image)) = docker_instance().await else { return };
    let admin = dd.admin_token();
    dd.create_user(&admin, "plain", "plain-password").await;
    let ws = create(&dd, &admin, &small_workspace("on-node", &image)).await;
    assert_eq!(start(&dd, &admin, &ws).await["status"], "RUNNING");
    let (status, nodes) = call(&dd, &admin, Method::GET, "/api/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{nodes}");
    assert_eq!(nodes.as_array().unwrap().len(), 1, "{nodes}");
    let node = &nodes[0];
    let (node_id, hostname) = (node["id"].as_str().unwrap(), node["hostname"].as_str().unwrap());
    assert!(node["ramReserved"].as_u64().unwrap() >= 134_217_728, "the workspace's memory is reserved: {node}");
    let namespace = node["workspaces"][0]["namespace"].as_str().unwrap();

    // Signed out: a redirect to the sign-in page.
    let r = browser_like().get(format!("{}/admin/nodes", dd.url)).send().await.unwrap();
    assert_eq!((r.status(), r.headers()["location"].to_str().unwrap()), (StatusCode::SEE_OTHER, "/"));

    // The administrator: one row, the engine, with its memory and the workspace as a link.
    let browser = browser_like();
    sign_in(&dd, &browser, "admin", ADMIN_PASSWORD).await;
    let users = browser.get(format!("{}/admin/users", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(users.contains("id=\"nav-nodes\" href=\"/admin/nodes\""), "a link in the Administration menu");
    let r = browser.get(format!("{}/admin/nodes", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert_eq!(page.matches("<tr data-node=").count(), 1, "{page}");
    let row = between(&page, &format!("<tr data-node=\"{node_id}\""), "</tr>");
    assert!(row.contains(&format!("<strong class=\"hostname\">{hostname}</strong>")), "{row}");
    let short: String = node_id.chars().take(12).collect();
    assert!(row.contains(&format!("title=\"{node_id}\">{short}</code>")), "{row}");
    assert!(row.contains("<span class=\"tag\">manager</span>"), "{row}");
    assert!(row.contains("<td class=\"availability\">active</td>"), "{row}");
    let memory = format!("{:.1} of {:.1} GiB", gib(&node["ramReserved"]), gib(&node["ramTotal"]));
    assert!(row.contains(&memory), "'{memory}' in {row}");
    assert!(row.contains("<progress value="), "{row}");
    assert!(row.contains(&format!("<a href=\"/workspaces/{ws}\">{namespace}:on-node</a>")), "{row}");
    assert!(row.contains("class=\"button secondary drain-node\""), "{row}");
    assert!(!row.contains("activate-node") && !row.contains("remove-node"), "an active node is only drained: {row}");
    // One engine: no join command, but why.
    assert!(!page.contains("id=\"join-command\""));
    let join = between(&page, "id=\"join-unavailable\"", "</p>");
    assert!(join.contains("nodes are managed only with runtime.kind"), "{join}");

    // Drain: first the confirmation (a page of its own without htmx, a dialog with it)...
    let drain = between(row, "drain-node\" href=\"", "\"").to_string();
    assert!(drain.starts_with("/admin/nodes/") && drain.ends_with("/drain"), "{drain}");
    let r = browser.get(format!("{}{drain}", dd.url)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let confirm = r.text().await.unwrap();
    let dialog = between(&confirm, "<dialog id=\"node-confirm-dialog\"", "</dialog>");
    assert!(dialog.contains(" open>") && dialog.contains(&format!("Drain <strong>{hostname}</strong>")), "{dialog}");
    assert!(dialog.contains("the 1 workspace(s) running on it"), "{dialog}");
    assert!(dialog.contains(&format!("action=\"{drain}\"")), "{dialog}");
    let r = browser.get(format!("{}{drain}", dd.url)).header("hx-request", "true").send().await.unwrap();
    let fragment = r.text().await.unwrap();
    assert!(fragment.starts_with("<dialog id=\"node-confirm-dialog\"") && !fragment.contains(" open>"), "{fragment}");
    // ... then the post: without the token, refused; with it, the page again saying why not.
    let r = browser.post(format!("{}{drain}", dd.url)).form(&[("x", "y")]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let csrf = field_value(dialog, "csrf").unwrap();
    let r = browser.post(format!("{}{drain}", dd.url)).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let refused = r.text().await.unwrap();
    let error = between(&refused, "<p id=\"nodes-error\"", "</p>");
    assert!(error.contains("nodes are managed only with runtime.kind = &#34;swarm&#34;"), "{error}");
    assert!(refused.contains("id=\"nodes-table\"") && refused.contains(&format!("/workspaces/{ws}")), "the page again");
    let activate = drain.replace("/drain", "/activate");
    let r = browser.post(format!("{}{activate}", dd.url)).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("id=\"nodes-error\""));
    // Nothing changed: the workspace runs, the node takes workspaces.
    let (_, after) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{ws}"), None).await;
    assert_eq!(after["status"], "RUNNING", "{after}");
    let (_, nodes) = call(&dd, &admin, Method::GET, "/api/nodes", None).await;
    assert_eq!(nodes[0]["availability"], "active", "{nodes}");
    assert_eq!(nodes[0]["workspaces"][0]["id"], ws.as_str(), "{nodes}");

    // A plain user: the 403 page for the page, the confirmation and the post.
    let plain = browser_like();
    sign_in(&dd, &plain, "plain", "plain-password").await;
    let home = plain.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(!home.contains("/admin/nodes"));
    for path in ["/admin/nodes".to_string(), drain.clone()] {
        let r = plain.get(format!("{}{path}", dd.url)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("id=\"error-title\""), "{path}");
    }
    let plain_csrf = field_value(&home, "csrf").unwrap();
    let r = plain.post(format!("{}{drain}", dd.url)).form(&[("csrf", plain_csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (_, after) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{ws}"), None).await;
    assert_eq!(after["status"], "RUNNING", "{after}");
}
