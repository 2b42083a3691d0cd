//! The dashboard over plain HTTP: who sees which page with which status, CSRF, escaping.
//! (The browser tests in browser.rs drive the same pages in Chromium.)

mod common;

use common::{ADMIN_PASSWORD, Backend, Instance, browser_like, field_value, sign_in};
use reqwest::StatusCode;

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
