//! The dashboard in a real headless Chromium (chromedriver + thirtyfour), against a real
//! server on a fresh SQLite instance per test. One browser session per test; screenshots land
//! in `target/screenshots/` (and a `-failure.png` for every failing test).

mod common;

use common::ADMIN_PASSWORD;
use common::browser::{Ui, in_batches};
use futures::FutureExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use thirtyfour::prelude::*;

const WRONG_CREDENTIALS: &str = "wrong user name or password";
const THROTTLED: &str = "too many failed sign-ins";
const XSS_SEARCH: &str = "<script>window.__xss=1</script>";
const XSS_TOKEN_NAME: &str = "<img src=x onerror=\"window.__xss=2\">";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sign_out_and_throttling() {
    let Some(ui) = Ui::start("sign_in").await else { return };
    ui.run(async |ui| {
        // Signed out, the pages behind sign-in send the visitor to the sign-in page.
        for path in ["/account", "/admin/users"] {
            ui.goto(path).await;
            ui.wait_path("/").await;
            ui.visible("form#signin").await;
        }

        let form = ui.find("form#signin").await;
        assert_eq!(attr(&form, "method").await.to_lowercase(), "post", "form#signin method");
        assert_eq!(attr(&form, "action").await, "/login", "form#signin action");
        assert_eq!(attr(&ui.find("input#username").await, "name").await, "username", "input#username name");
        assert_eq!(attr(&ui.find("input#password").await, "type").await, "password", "input#password type");
        ui.visible("button#signin-submit").await;
        ui.screenshot("signin").await;

        // A wrong password and an unknown name get the same message, in place.
        for (name, password) in [("admin", "wrong-password"), ("nobody", "wrong-password")] {
            ui.submit_sign_in(name, password).await;
            let error = ui.visible("#signin-error").await;
            assert_eq!(attr(&error, "role").await, "alert", "#signin-error role");
            let message = error.text().await.unwrap();
            assert!(message.contains(WRONG_CREDENTIALS), "sign-in error for {name}: {message:?}");
            ui.visible("form#signin").await;
            assert!(!ui.exists("nav#nav").await, "a failed sign-in shows no signed-in layout");
        }
        ui.screenshot("signin-error").await;

        // The right password: the Workspaces page with the layout of every signed-in page.
        ui.sign_in("admin", ADMIN_PASSWORD).await;
        assert_eq!(ui.path().await, "/");
        assert!(!ui.exists("#signin-error").await);
        assert_layout(ui, true).await;
        ui.screenshot("workspaces").await;

        // Signing out ends the session: the old cookie no longer works for the API either.
        let cookie = ui.session_cookie().await;
        ui.sign_out().await;
        let r = reqwest::Client::new()
            .get(format!("{}/api/user", ui.dd.url))
            .header("Cookie", format!("drydock_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "the signed-out session still works");
        ui.goto("/account").await;
        ui.wait_path("/").await;
        ui.visible("form#signin").await;

        // Throttling: after 5 failures of one account, the next sign-in says so.
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        ui.dd.create_user(&admin, "mallory", "mallory-password").await;
        for attempt in 1..=6 {
            ui.submit_sign_in("mallory", "not-her-password").await;
            let message = ui.text("#signin-error").await;
            let expected = if attempt <= 5 { WRONG_CREDENTIALS } else { THROTTLED };
            assert!(message.contains(expected), "sign-in attempt {attempt}: {message:?} should contain {expected:?}");
        }
        ui.screenshot("signin-throttled").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_manages_users() {
    let Some(ui) = Ui::start("admin_users").await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        let erin = ui.dd.create_user(&admin, "erin", "erin-password").await;
        let erin_id = erin["id"].as_str().unwrap();

        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.click("a#nav-admin").await;
        ui.wait_path("/admin/users").await;
        ui.visible("table#user-table").await;
        assert_eq!(user_rows(ui).await, ["admin", "erin"]);
        assert_eq!(ui.text("#user-total").await, "2");
        let row = "tr[data-user-name=\"erin\"]";
        assert_eq!(ui.text(&format!("{row} td.email")).await, "erin@example.com");
        assert_eq!(ui.text(&format!("{row} td.admin")).await, "no");
        assert_eq!(ui.text("tr[data-user-name=\"admin\"] td.admin").await, "yes");
        assert!(!ui.text(&format!("{row} td.created")).await.is_empty(), "td.created is empty");
        let link = ui.find(&format!("{row} td.name a")).await;
        assert_eq!(attr(&link, "href").await, format!("/admin/users/{erin_id}"));
        assert!(!ui.exists("a#page-prev").await && !ui.exists("a#page-next").await, "one page needs no paging");
        assert_layout(ui, true).await;
        ui.screenshot("users").await;

        // Add a user through the dialog: a taken e-mail, then a taken name, are refused in it.
        ui.click("a#add-user").await;
        ui.visible("dialog#add-user-dialog").await;
        ui.find("dialog#add-user-dialog form#add-user-form").await;
        assert_csrf_fields(ui).await;
        ui.fill("input#new-name", "frank").await;
        ui.fill("input#new-email", "erin@example.com").await;
        ui.fill("input#new-password", "frank-password").await;
        ui.click("button#add-user-submit").await;
        let error = ui.text("#new-email-error").await;
        assert!(!error.is_empty(), "#new-email-error is empty");
        assert!(!ui.exists("#new-name-error").await, "only the e-mail is wrong");
        ui.visible("dialog#add-user-dialog").await;
        ui.screenshot("add-user-taken-email").await;
        assert_eq!(user_count(ui, &admin).await, 2, "a refused user was created");
        assert_eq!(ui.find("#user-total").await.text().await.unwrap().trim(), "2", "#user-total after a refusal");

        ui.forget("#new-email-error").await;
        ui.fill("input#new-name", "erin").await;
        ui.fill("input#new-email", "frank@example.com").await;
        ui.fill("input#new-password", "frank-password").await;
        ui.click("button#add-user-submit").await;
        assert!(!ui.text("#new-name-error").await.is_empty(), "#new-name-error is empty");
        assert!(!ui.exists("#new-email-error").await, "only the name is taken");
        assert_eq!(user_count(ui, &admin).await, 2, "a refused user was created");

        ui.fill("input#new-name", "frank").await;
        ui.fill("input#new-email", "frank@example.com").await;
        ui.fill("input#new-password", "frank-password").await;
        ui.click("button#add-user-submit").await;
        let frank = ui.until("frank to exist", async || find_user(ui, &admin, "frank").await).await;
        let frank_id = frank["id"].as_str().unwrap().to_string();
        let frank_page = format!("/admin/users/{frank_id}");
        ui.wait_path(&frank_page).await;
        ui.wait_text("h1#user-name", "frank").await;
        assert!(!ui.text("#flash").await.is_empty(), "no flash message after adding a user");
        assert_eq!(ui.text("#user-email").await, "frank@example.com");
        assert_eq!(ui.text("#user-admin").await, "User");
        assert_eq!(user_count(ui, &admin).await, 3);

        // Find them by the live search, and open their details from the list.
        ui.click("a#nav-admin").await;
        ui.wait_path("/admin/users").await;
        ui.visible("input#user-search-q").await.send_keys("fra").await.unwrap();
        wait_rows(ui, &["frank"]).await;
        ui.screenshot("users-search").await;
        ui.click("tr[data-user-name=\"frank\"] td.name a").await;
        ui.wait_path(&frank_page).await;
        ui.wait_text("h1#user-name", "frank").await;
        ui.find("section#user-workspaces").await;
        ui.find("section#user-limits").await;
        assert_layout(ui, true).await;
        ui.screenshot("user-details").await;

        // A taken e-mail is refused in #email-error; a free one is saved.
        ui.fill("input#email", "erin@example.com").await;
        ui.click("button#email-submit").await;
        assert!(!ui.text("#email-error").await.is_empty(), "#email-error is empty");
        assert_eq!(find_user(ui, &admin, "frank").await.unwrap()["email"], "frank@example.com");
        ui.fill("input#email", "frank.new@example.com").await;
        ui.click("button#email-submit").await;
        ui.wait_text("#user-email", "frank.new@example.com").await;
        assert!(!ui.exists("#email-error").await, "#email-error stays after a good e-mail");
        assert_eq!(find_user(ui, &admin, "frank").await.unwrap()["email"], "frank.new@example.com");

        // Reset their password: the old one stops working, the new one works.
        ui.fill("input#reset-password", "frank-new-password").await;
        ui.click("button#password-submit").await;
        ui.until("the old password to stop working", async || {
            (ui.dd.login("frank", "frank-password").await.status() == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        assert_eq!(ui.dd.login("frank", "frank-new-password").await.status(), StatusCode::OK);
        assert!(!ui.exists("#password-error").await, "#password-error after a good password");

        // Grant administrator rights.
        ui.wait_text("button#admin-toggle", "Grant administrator rights").await;
        ui.click("button#admin-toggle").await;
        ui.wait_text("#user-admin", "Administrator").await;
        ui.wait_text("button#admin-toggle", "Revoke administrator rights").await;
        let frank_token = ui.dd.token_for("frank", "frank-new-password").await;
        let r = ui.dd.req(Method::GET, "/api/admin/user").bearer_auth(&frank_token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "frank was granted administrator rights but cannot list users");
        ui.screenshot("user-admin").await;

        // Remove them: the dialog names them; cancel keeps them, confirm removes them.
        ui.click("a#remove-user").await;
        ui.visible("dialog#remove-dialog").await;
        let text = ui.text("#remove-text").await;
        assert!(text.contains("frank") && text.contains("frank.new@example.com"), "#remove-text: {text:?}");
        ui.screenshot("remove-dialog").await;
        ui.click("button#remove-cancel").await;
        ui.hidden("dialog#remove-dialog").await;
        assert_eq!(ui.path().await, frank_page);
        assert!(find_user(ui, &admin, "frank").await.is_some(), "cancel removed the user");

        ui.click("a#remove-user").await;
        ui.visible("dialog#remove-dialog").await;
        ui.click("button#remove-confirm").await;
        ui.wait_path("/admin/users").await;
        assert!(!ui.text("#flash").await.is_empty(), "no flash message after removing a user");
        ui.visible("table#user-table").await;
        assert_eq!(user_rows(ui).await, ["admin", "erin"]);
        assert!(find_user(ui, &admin, "frank").await.is_none(), "frank is still there");
        ui.screenshot("user-removed").await;

        // An unknown user: the 404 page, with the status 404.
        ui.goto("/admin/users/no-such-user").await;
        ui.visible("h1#error-title").await;
        ui.visible("p#error-message").await;
        assert_eq!(ui.status_of("/admin/users/no-such-user").await, StatusCode::NOT_FOUND);
        ui.screenshot("not-found").await;

        narrow_layout(ui).await;
    })
    .await;
}

/// At 390 px wide every nav link is on screen and takes a click.
async fn narrow_layout(ui: &Ui) {
    ui.driver.set_window_rect(0, 0, 390, 844).await.unwrap();
    ui.goto("/").await;
    let width = ui.js("return window.innerWidth").await.as_f64().unwrap();
    assert!(width <= 400.0, "the window is {width} px wide, not 390");
    for (link, path, step) in [
        ("a#nav-admin", "/admin/users", "narrow-users"),
        ("a#nav-account", "/account", "narrow-account"),
        ("a#nav-workspaces", "/", "narrow-workspaces"),
    ] {
        for css in ["a#nav-workspaces", "a#nav-admin", "a#nav-account"] {
            let el = ui.visible(css).await;
            let rect = el.rect().await.unwrap();
            assert!(
                rect.x >= 0.0 && rect.x + rect.width <= width + 0.5 && rect.width > 0.0 && rect.height > 0.0,
                "{css} is not within the {width}-px-wide window: {rect:?}"
            );
            assert!(el.is_clickable().await.unwrap(), "{css} is not clickable at 390 px");
        }
        ui.click(link).await;
        ui.wait_path(path).await;
        ui.visible("nav#nav").await;
        ui.screenshot(step).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_list_pages_and_search_shows_text_escaped() {
    let Some(ui) = Ui::start("user_list").await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        let names: Vec<String> = (0..51).map(|i| format!("user-{i:02}")).collect();
        in_batches(names.iter().map(|n| ui.dd.create_user(&admin, n, "user-password").map(|_| ())), 4).await;

        // 52 users: 50 on the first page, 2 on the second.
        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.goto("/admin/users").await;
        ui.visible("table#user-table").await;
        assert_eq!(ui.text("#user-total").await, "52");
        let first = user_rows(ui).await;
        assert_eq!(first.len(), 50, "first page: {first:?}");
        assert!(!ui.exists("a#page-prev").await, "a#page-prev on the first page");
        ui.screenshot("users-page-1").await;
        ui.click("a#page-next").await;
        let second =
            ui.until("the second page", async || Some(user_rows(ui).await).filter(|rows| rows.len() == 2)).await;
        ui.visible("a#page-prev").await;
        assert!(!ui.exists("a#page-next").await, "a#page-next on the last page");
        let mut all: Vec<String> = first.iter().chain(&second).cloned().collect();
        all.sort();
        let mut expected = names.clone();
        expected.push("admin".into());
        expected.sort();
        assert_eq!(all, expected, "the two pages together are not every user once");
        ui.screenshot("users-page-2").await;

        // Typing filters the list live; submitting the form filters it too.
        ui.goto("/admin/users").await;
        ui.visible("input#user-search-q").await.send_keys("user-1").await.unwrap();
        let tens: Vec<String> = names.iter().filter(|n| n.starts_with("user-1")).cloned().collect();
        wait_rows(ui, &tens).await;
        ui.goto("/admin/users").await;
        ui.js("document.querySelector('#user-search-q').value = 'user-2'; \
               document.querySelector('form#user-search').requestSubmit(); return null")
            .await;
        let twenties: Vec<String> = names.iter().filter(|n| n.starts_with("user-2")).cloned().collect();
        wait_rows(ui, &twenties).await;
        ui.goto("/admin/users?q=user-3").await;
        let thirties: Vec<String> = names.iter().filter(|n| n.starts_with("user-3")).cloned().collect();
        wait_rows(ui, &thirties).await;
        assert_eq!(input_value(ui, "input#user-search-q").await, "user-3");

        // What a person typed is shown as text, never run: live, submitted, and in the URL.
        ui.goto("/admin/users").await;
        ui.visible("input#user-search-q").await.send_keys(XSS_SEARCH).await.unwrap();
        wait_rows(ui, &[] as &[&str]).await;
        assert_no_script_ran(ui).await;
        assert_eq!(input_value(ui, "input#user-search-q").await, XSS_SEARCH);
        ui.js("document.querySelector('form#user-search').requestSubmit(); return null").await;
        wait_rows(ui, &[] as &[&str]).await;
        assert_no_script_ran(ui).await;
        assert_eq!(input_value(ui, "input#user-search-q").await, XSS_SEARCH);
        let query: String = url_encode(XSS_SEARCH);
        ui.goto(&format!("/admin/users?q={query}")).await;
        ui.visible("table#user-table").await;
        assert_eq!(user_rows(ui).await, Vec::<String>::new());
        assert_eq!(input_value(ui, "input#user-search-q").await, XSS_SEARCH);
        assert_no_script_ran(ui).await;
        ui.screenshot("search-escaped").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_user_is_kept_out_and_csrf_is_checked() {
    let Some(ui) = Ui::start("plain_user").await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        let admin_id = ui.dd.req(Method::GET, "/api/user").bearer_auth(&admin).send().await.unwrap();
        let admin_id = admin_id.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        ui.dd.create_user(&admin, "gina", "gina-password").await;

        ui.sign_in("gina", "gina-password").await;
        assert_layout(ui, false).await;
        ui.screenshot("workspaces").await;

        // The administration pages answer 403 with the error page, not a redirect.
        ui.goto("/admin/users").await;
        ui.visible("h1#error-title").await;
        ui.visible("p#error-message").await;
        assert_eq!(ui.path().await, "/admin/users");
        assert!(!ui.exists("table#user-table").await, "a plain user sees the user table");
        ui.screenshot("forbidden").await;
        assert_eq!(ui.status_of("/admin/users").await, StatusCode::FORBIDDEN, "GET /admin/users");
        let details = format!("/admin/users/{admin_id}");
        assert_eq!(ui.status_of(&details).await, StatusCode::FORBIDDEN, "GET {details}");

        // A POST with the session cookie but without the CSRF token is refused.
        ui.goto("/account").await;
        let form = ui.find("form#token-form").await;
        let action = form_action(&form).await;
        let field = attr(&ui.find("form#token-form input#token-name").await, "name").await;
        let csrf = input_value(ui, "form#token-form input[name=csrf]").await;
        assert!(!csrf.is_empty(), "form#token-form carries an empty csrf field");
        let post = async |body: Vec<(&str, &str)>, header: Option<&str>| {
            let mut req = ui.http_as_browser(Method::POST, &action).await.form(&body);
            if let Some(token) = header {
                req = req.header("X-CSRF-Token", token);
            }
            req.send().await.unwrap().status()
        };
        let status = post(vec![(field.as_str(), "without-csrf")], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "POST {action} without a CSRF token");
        let status = post(vec![(field.as_str(), "wrong-csrf"), ("csrf", "not-the-token")], None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "POST {action} with a wrong CSRF token");
        let status = post(vec![(field.as_str(), "wrong-header")], Some("not-the-token")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "POST {action} with a wrong X-CSRF-Token");
        // The same request with the session's token goes through (so the 403 was the CSRF check).
        let status = post(vec![(field.as_str(), "with-csrf"), ("csrf", csrf.as_str())], None).await;
        assert!(status.is_success() || status.is_redirection(), "POST {action} with the CSRF token: {status}");
        let status = post(vec![(field.as_str(), "with-header")], Some(csrf.as_str())).await;
        assert!(status.is_success() || status.is_redirection(), "POST {action} with X-CSRF-Token: {status}");
        let r = ui.http_as_browser(Method::GET, "/api/token").await.send().await.unwrap();
        let tokens: Vec<String> =
            r.json::<Vec<Value>>().await.unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect();
        assert!(tokens.contains(&"with-csrf".to_string()), "tokens: {tokens:?}");
        assert!(tokens.contains(&"with-header".to_string()), "tokens: {tokens:?}");
        for refused in ["without-csrf", "wrong-csrf", "wrong-header"] {
            assert!(!tokens.contains(&refused.to_string()), "a refused POST made token {refused}");
        }

        // Signing out without the token is refused too, and the session stays.
        let action = form_action(&ui.find("form#signout").await).await;
        let r = ui.http_as_browser(Method::POST, &action).await.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "POST {action} (sign out) without a CSRF token");
        ui.goto("/account").await;
        ui.visible("form#own-password-form").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_password_and_tokens() {
    let Some(ui) = Ui::start("account").await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        ui.dd.create_user(&admin, "hank", "hank-password").await;
        ui.sign_in("hank", "hank-password").await;
        ui.click("a#nav-account").await;
        ui.wait_path("/account").await;
        ui.visible("form#own-password-form").await;
        assert_layout(ui, false).await;
        ui.screenshot("account").await;

        // A wrong current password, then a confirmation that differs: refused in place.
        for (current, confirm) in [("not-hank-password", "hank-new-password"), ("hank-password", "hank-other-password")]
        {
            ui.forget("#own-password-error").await;
            ui.fill("input#current-password", current).await;
            ui.fill("input#new-password", "hank-new-password").await;
            ui.fill("input#confirm-password", confirm).await;
            ui.click("button#own-password-submit").await;
            let error = ui.text("#own-password-error").await;
            assert!(!error.is_empty(), "#own-password-error is empty (current {current:?}, confirm {confirm:?})");
        }
        assert_eq!(ui.dd.login("hank", "hank-password").await.status(), StatusCode::OK, "a refused change took effect");
        ui.screenshot("account-password-error").await;

        // The right one: the old password stops working, the new one works, this session stays.
        ui.fill("input#current-password", "hank-password").await;
        ui.fill("input#new-password", "hank-new-password").await;
        ui.fill("input#confirm-password", "hank-new-password").await;
        ui.click("button#own-password-submit").await;
        ui.until("the old password to stop working", async || {
            (ui.dd.login("hank", "hank-password").await.status() == StatusCode::UNAUTHORIZED).then_some(())
        })
        .await;
        assert_eq!(ui.dd.login("hank", "hank-new-password").await.status(), StatusCode::OK);
        ui.goto("/account").await;
        ui.visible("form#own-password-form").await;
        assert!(!ui.exists("#own-password-error").await, "#own-password-error after a good change");

        // A new token is shown once, works, and goes away when revoked.
        ui.fill("input#token-name", "ci-token").await;
        ui.click("button#token-submit").await;
        let secret = ui.text("code#new-token").await;
        assert!(!secret.is_empty(), "code#new-token is empty");
        ui.visible("table#token-table tr[data-token-name=\"ci-token\"] button.revoke-token").await;
        ui.screenshot("account-new-token").await;
        let me = ui.dd.req(Method::GET, "/api/user").bearer_auth(&secret).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::OK, "the new token does not work");
        assert_eq!(me.json::<Value>().await.unwrap()["name"], "hank");
        ui.goto("/account").await;
        ui.visible("table#token-table tr[data-token-name=\"ci-token\"]").await;
        assert!(!ui.exists("code#new-token").await, "the token's secret is shown again");
        assert!(!ui.driver.source().await.unwrap().contains(&secret), "the token's secret is in the page again");

        // A token name is text: shown literally, never run.
        ui.fill("input#token-name", XSS_TOKEN_NAME).await;
        ui.click("button#token-submit").await;
        ui.visible("code#new-token").await;
        ui.until("the token named like markup in the table", async || {
            ui.attrs("#token-table tr[data-token-name]", "data-token-name")
                .await
                .contains(&XSS_TOKEN_NAME.to_string())
                .then_some(())
        })
        .await;
        let shown = ui.js("return document.querySelector('#token-table').textContent").await;
        assert!(shown.as_str().unwrap().contains(XSS_TOKEN_NAME), "the token name is not shown literally");
        assert_eq!(ui.js("return document.querySelectorAll('#token-table img').length").await, json!(0));
        assert_no_script_ran(ui).await;

        ui.click("tr[data-token-name=\"ci-token\"] button.revoke-token").await;
        ui.gone("tr[data-token-name=\"ci-token\"]").await;
        let me = ui.dd.req(Method::GET, "/api/user").bearer_auth(&secret).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::UNAUTHORIZED, "the revoked token still works");
        ui.goto("/account").await;
        ui.visible("table#token-table").await;
        assert!(!ui.exists("tr[data-token-name=\"ci-token\"]").await, "the revoked token is listed again");
        ui.screenshot("account-revoked").await;

        // Sign out and in again with the new password.
        ui.sign_out().await;
        ui.sign_in("hank", "hank-new-password").await;
    })
    .await;
}

// ---- Helpers ----

/// The layout of every signed-in page.
async fn assert_layout(ui: &Ui, admin: bool) {
    ui.visible("nav#nav").await;
    assert_eq!(attr(&ui.visible("nav#nav a#nav-workspaces").await, "href").await, "/");
    assert_eq!(attr(&ui.visible("nav#nav a#nav-account").await, "href").await, "/account");
    if admin {
        assert_eq!(attr(&ui.visible("nav#nav a#nav-admin").await, "href").await, "/admin/users");
    } else {
        assert!(!ui.exists("#nav-admin").await, "a plain user's nav shows #nav-admin");
    }
    ui.visible("form#signout button#signout-submit").await;
    for css in ["#flash", "#banner", "#modal"] {
        ui.find(css).await;
    }
    assert_csrf_fields(ui).await;
}

/// Every form that sends something to the server (all but GET forms and the `method="dialog"`
/// forms that only close a dialog) carries a non-empty hidden `csrf` field.
async fn assert_csrf_fields(ui: &Ui) {
    let missing = ui
        .js("return [...document.forms]
                .filter(f => !['get', 'dialog'].includes((f.getAttribute('method') || '').toLowerCase()))
                .filter(f => { const c = f.querySelector('input[name=csrf]'); return !c || c.type !== 'hidden' || !c.value; })
                .map(f => f.id || f.outerHTML.slice(0, 80))")
        .await;
    assert_eq!(missing, json!([]), "forms without a hidden csrf field on {}", ui.path().await);
}

async fn attr(el: &WebElement, name: &str) -> String {
    el.attr(name).await.unwrap().unwrap_or_default()
}

async fn input_value(ui: &Ui, css: &str) -> String {
    ui.find(css).await.prop("value").await.unwrap().unwrap_or_default()
}

/// Where a form posts: its `action`, or its htmx `hx-post`.
async fn form_action(form: &WebElement) -> String {
    for name in ["action", "hx-post"] {
        let value = attr(form, name).await;
        if !value.is_empty() {
            return value;
        }
    }
    panic!("the form has neither action nor hx-post: {}", form.outer_html().await.unwrap_or_default());
}

/// The names of the users listed, in order.
async fn user_rows(ui: &Ui) -> Vec<String> {
    ui.attrs("#user-table tbody#user-rows tr[data-user-name]", "data-user-name").await
}

/// Waits until the list shows exactly these users.
async fn wait_rows(ui: &Ui, expected: &[impl AsRef<str>]) {
    let expected: Vec<String> = expected.iter().map(|s| s.as_ref().to_string()).collect();
    let mut last = Vec::new();
    let found = ui
        .until_or_none(async || {
            last = user_rows(ui).await;
            (last == expected).then_some(())
        })
        .await;
    assert!(found.is_some(), "the user list should show {expected:?}; it shows {last:?}");
}

async fn assert_no_script_ran(ui: &Ui) {
    assert_eq!(ui.js("return typeof window.__xss").await, json!("undefined"), "a script typed by a person ran");
    let injected = ui.js("return [...document.scripts].some(s => s.textContent.includes('__xss'))").await;
    assert_eq!(injected, json!(false), "the page holds a script element with the typed text");
}

async fn user_count(ui: &Ui, token: &str) -> usize {
    let r = ui.dd.req(Method::GET, "/api/admin/user?maxItems=1000").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json::<Vec<Value>>().await.unwrap().len()
}

async fn find_user(ui: &Ui, token: &str, name: &str) -> Option<Value> {
    let r = ui.dd.req(Method::GET, &format!("/api/user/find?name={name}")).bearer_auth(token).send().await.unwrap();
    match r.status() {
        StatusCode::OK => Some(r.json().await.unwrap()),
        StatusCode::NOT_FOUND => None,
        status => panic!("find {name}: {status}"),
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A workspace in the browser: its page follows the start live (status and the start's
/// events, with no reload and well before the 60 s fallback poll), the Workspaces page's
/// table follows a stop, and the terminal opened from the table runs a command.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn browser_workspace_live_status_and_terminal() {
    let Some(image) = common::docker_image().await else { return };
    let Some(ui) = Ui::start("terminal").await else { return };
    let instance = std::fs::read_to_string(ui.dd.data_dir().join("instance.id")).unwrap();
    let _guard = drydock_docker::testing::InstanceGuard::new(instance.trim());
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        let config = json!({"name": "shell", "defaultEnv": "default", "environments": {"default": {
            "recipe": {"type": "dockerimage", "location": image}}}});
        let r = ui.dd.req(Method::POST, "/api/workspace").bearer_auth(&admin).json(&config).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let id = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
        let api = async |method: Method, path: &str| {
            let r = ui.dd.req(method, path).bearer_auth(&admin).send().await.unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        };

        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.goto(&format!("/workspaces/{id}")).await;
        ui.wait_text("#workspace-status", "STOPPED").await;
        ui.mark_document().await;
        api(Method::POST, &format!("/api/workspace/{id}/runtime")).await;
        ui.wait_text("#workspace-status", "RUNNING").await;
        ui.until("the start's progress in the event log", async || {
            let log = ui.text("#workspace-events").await;
            (log.contains("machine dev: running") && log.contains("RUNNING")).then_some(())
        })
        .await;
        assert!(ui.exists("#machine-table tr[data-machine=dev]").await, "the machine's row is shown");
        let same_page = ui.js("return window.__drydockOldDocument === true").await;
        assert_eq!(same_page, Value::Bool(true), "the page was reloaded instead of updated");
        ui.screenshot("workspace-page").await;

        ui.goto("/").await;
        ui.wait_text("tr[data-workspace='admin:shell'] td.status", "RUNNING").await;
        ui.click("a.open-terminal").await;
        ui.visible("#terminal[data-state=open]").await;
        let input = ui.find(".xterm-helper-textarea").await;
        input.send_keys("echo hi-$((40+2))\u{E007}").await.unwrap();
        ui.until("the command's output in the terminal", async || {
            let text = ui.js("return document.querySelector('.xterm-rows').innerText").await;
            text.as_str().filter(|t| t.contains("hi-42")).map(str::to_string)
        })
        .await;
        ui.screenshot("terminal").await;
        // Ending the shell shows its exit code.
        input.send_keys("exit 7\u{E007}").await.unwrap();
        ui.visible("#terminal[data-state=closed][data-exit-code='7']").await;

        ui.goto("/").await;
        ui.wait_text("tr[data-workspace='admin:shell'] td.status", "RUNNING").await;
        api(Method::DELETE, &format!("/api/workspace/{id}/runtime")).await;
        ui.wait_text("tr[data-workspace='admin:shell'] td.status", "STOPPED").await;
        assert!(!ui.exists("a.open-terminal").await, "a stopped workspace offers no terminal");
    })
    .await;
}

/// An administrator edits a user's limits on their page and sees the source and the usage
/// bar; a wrong value is refused in place; the user sees their own on the Account page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_edits_limits_and_sees_usage() {
    let Some(ui) = Ui::start("limits").await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        let gail = ui.dd.create_user(&admin, "gail", "gail-password").await;
        let gail_id = gail["id"].as_str().unwrap().to_string();
        let gail_token = ui.dd.token_for("gail", "gail-password").await;
        // One workspace (created, not started): 1 workspace in use.
        let config = json!({"name": "notes", "defaultEnv": "default", "environments": {"default": {
            "recipe": {"type": "dockerimage", "location": "busybox"}}}});
        let r = ui.dd.req(Method::POST, "/api/workspace").bearer_auth(&gail_token).json(&config).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);

        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.goto(&format!("/admin/users/{gail_id}")).await;
        let row = |kind: &str, cell: &str| format!("#limits-table tr[data-limit={kind}] td.{cell}");
        assert_eq!(ui.text(&row("workspace", "limit")).await, "30 item");
        assert_eq!(ui.text(&row("workspace", "source")).await, "default");
        assert_eq!(attr(&ui.find("#usage-workspace").await, "value").await, "1");
        assert_eq!(attr(&ui.find("#usage-workspace").await, "max").await, "30");

        // A wrong value: refused in place, nothing stored.
        ui.fill("#limit-workspaces", "-5").await;
        ui.mark_document().await;
        ui.click("#limits-submit").await;
        ui.wait_new_document().await;
        assert!(ui.text("#limits-error").await.contains("below -1"), "{}", ui.text("#limits-error").await);
        assert_eq!(ui.text(&row("workspace", "source")).await, "default");

        // Override memory (in gb) and workspaces; runtime keeps its default.
        ui.fill("#limit-workspaces", "4").await;
        ui.fill("#limit-ram", "2gb").await;
        ui.mark_document().await;
        ui.click("#limits-submit").await;
        ui.wait_new_document().await;
        assert_eq!(ui.text(&row("workspace", "limit")).await, "4 item");
        assert_eq!(ui.text(&row("workspace", "source")).await, "override");
        assert_eq!(ui.text(&row("RAM", "limit")).await, "2048 mb");
        assert_eq!(ui.text(&row("runtime", "source")).await, "default");
        assert_eq!(attr(&ui.find("#usage-workspace").await, "max").await, "4");
        assert_eq!(input_value(ui, "#limit-ram").await, "2048");
        ui.js("document.getElementById('user-limits').scrollIntoView(); return null").await;
        ui.screenshot("user-limits").await;
        let r = ui.dd.req(Method::GET, &format!("/api/resource/{gail_id}")).bearer_auth(&admin).send().await.unwrap();
        let limits: Value = r.json().await.unwrap();
        assert_eq!(limits[1], json!({"type": "workspace", "amount": 4, "unit": "item"}));

        // gail sees her own on the Account page.
        ui.sign_out().await;
        ui.sign_in("gail", "gail-password").await;
        ui.goto("/account").await;
        assert_eq!(ui.text("#my-limits tr[data-limit=workspace] td.source").await, "override");
        assert_eq!(attr(&ui.find("#my-limits #usage-workspace").await, "value").await, "1");
        assert!(!ui.exists("#limits-form").await, "a user cannot edit their own limits");

        // Back to the defaults.
        ui.sign_out().await;
        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.goto(&format!("/admin/users/{gail_id}")).await;
        ui.mark_document().await;
        ui.click("#limits-reset").await;
        ui.wait_new_document().await;
        assert_eq!(ui.text(&row("workspace", "source")).await, "default");
        assert_eq!(ui.text(&row("RAM", "limit")).await, "102400 mb");
    })
    .await;
}

/// Maintenance mode in the browser: an administrator turns it on from Administration →
/// Maintenance (an empty message is refused in place), every page shows the banner — the
/// sign-in page, a user's pages, an error page — and it goes when maintenance is turned off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_banner_and_admin_control() {
    let Some(ui) = Ui::start("maintenance").await else { return };
    ui.run(async |ui| {
        const MESSAGE: &str = "Upgrading drydock <now> & back at 14:00";
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        ui.dd.create_user(&admin, "ivy", "ivy-password").await;
        ui.goto("/").await;
        ui.visible("form#signin").await;
        assert!(!ui.exists("#maintenance-banner").await, "a banner without maintenance");

        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.click("a#nav-admin").await;
        ui.wait_path("/admin/users").await;
        ui.click("a#nav-maintenance").await;
        ui.wait_path("/admin/maintenance").await;
        assert_eq!(attr(&ui.find("#maintenance-status").await, "data-state").await, "off");
        assert_csrf_fields(ui).await;

        // Blanks only: refused in place, nothing changes.
        ui.fill("#maintenance-message", "   ").await;
        ui.mark_document().await;
        ui.click("#maintenance-submit").await;
        ui.wait_new_document().await;
        assert!(ui.text("#maintenance-error").await.contains("message is required"));
        assert!(!ui.exists("#maintenance-banner").await);

        ui.fill("#maintenance-message", MESSAGE).await;
        ui.mark_document().await;
        ui.click("#maintenance-submit").await;
        ui.wait_new_document().await;
        assert_eq!(attr(&ui.find("#maintenance-status").await, "data-state").await, "on");
        let banner = ui.text("#maintenance-banner").await;
        assert!(banner.contains(MESSAGE), "{banner:?}");
        ui.visible("#maintenance-banner a#maintenance-manage").await;
        assert_no_script_ran(ui).await;
        ui.screenshot("maintenance-on").await;
        let state: Value = ui.dd.req(Method::GET, "/api/system/state").send().await.unwrap().json().await.unwrap();
        assert_eq!(state, json!({"status": "MAINTENANCE", "message": MESSAGE}));

        // Everyone sees it: the sign-in page, a user's pages, an error page.
        ui.sign_out().await;
        assert!(ui.text("#maintenance-banner").await.contains(MESSAGE));
        ui.screenshot("maintenance-signin").await;
        ui.goto("/no-such-page").await;
        assert!(ui.text("#maintenance-banner").await.contains(MESSAGE));
        ui.goto("/").await;
        ui.sign_in("ivy", "ivy-password").await;
        assert!(ui.text("#maintenance-banner").await.contains(MESSAGE));
        assert!(!ui.exists("#maintenance-manage").await, "a user is offered the maintenance page");
        ui.goto("/account").await;
        assert!(ui.text("#maintenance-banner").await.contains(MESSAGE));
        assert_eq!(ui.status_of("/admin/maintenance").await, StatusCode::FORBIDDEN);

        // Off again: the banner goes.
        ui.sign_out().await;
        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.click("#maintenance-manage").await;
        ui.wait_path("/admin/maintenance").await;
        ui.mark_document().await;
        ui.click("#maintenance-off").await;
        ui.wait_new_document().await;
        assert_eq!(attr(&ui.find("#maintenance-status").await, "data-state").await, "off");
        assert!(!ui.exists("#maintenance-banner").await, "the banner stays after maintenance ended");
        ui.sign_out().await;
        assert!(!ui.exists("#maintenance-banner").await);
    })
    .await;
}

/// The License page in the browser: an administrator pastes a license that expired two days
/// ago (still in its grace period), sees its state and the banner on every page (users see
/// none), then removes it — the box must be ticked — and Fair Source applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn license_page_and_grace_banner() {
    let (private, public) = drydock_core::license::generate_key_pair();
    let Some(ui) = Ui::start_with("license", &[("DRYDOCK_LICENSE__TRUSTED_KEYS", &public)]).await else { return };
    ui.run(async |ui| {
        let admin = ui.dd.token_for("admin", ADMIN_PASSWORD).await;
        ui.dd.create_user(&admin, "ivy", "ivy-password").await;
        let now = chrono::Utc::now();
        let terms = drydock_core::license::LicenseTerms {
            id: "L-BROWSER".into(),
            licensee: "Example <Corp> & Co".into(),
            seats: 5,
            issued: now - chrono::Duration::days(60),
            expires: now - chrono::Duration::days(2),
        };
        let document = terms.sign(&drydock_core::license::parse_private_key(&private).unwrap()).unwrap();

        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.click("a#nav-admin").await;
        ui.wait_path("/admin/users").await;
        ui.click("a#nav-license").await;
        ui.wait_path("/admin/license").await;
        assert_eq!(attr(&ui.find("#license-status").await, "data-kind").await, "fair-source");
        assert!(ui.text("#license-seats").await.contains("2 users; no seat cap"));
        assert!(!ui.exists("#license-banner").await);
        assert_csrf_fields(ui).await;

        // Not a license: refused in place.
        ui.fill("#license-document", "{\"id\": \"nothing\"}").await;
        ui.mark_document().await;
        ui.click("#license-submit").await;
        ui.wait_new_document().await;
        assert!(ui.text("#license-error").await.contains("not a license document"));

        ui.fill("#license-document", &document).await;
        ui.mark_document().await;
        ui.click("#license-submit").await;
        ui.wait_new_document().await;
        let status = ui.find("#license-status").await;
        assert_eq!(
            (attr(&status, "data-kind").await, attr(&status, "data-state").await),
            ("paid".into(), "grace".into())
        );
        assert_eq!(ui.text("#license-id").await, "L-BROWSER");
        assert!(ui.text("#license-seats").await.contains("2 of 5 used"));
        let banner = ui.text("#license-banner").await;
        assert!(
            banner.contains("The license L-BROWSER expired on") && banner.contains("falls back to Fair Source on"),
            "{banner}"
        );
        assert_no_script_ran(ui).await;
        ui.screenshot("license-grace").await;
        ui.goto("/account").await;
        ui.visible("#license-banner a#license-manage").await;

        // A user sees no banner and no page.
        ui.sign_out().await;
        ui.sign_in("ivy", "ivy-password").await;
        assert!(!ui.exists("#license-banner").await, "a user sees the license banner");
        assert_eq!(ui.status_of("/admin/license").await, StatusCode::FORBIDDEN);

        // Removed: the box must be ticked first (the browser asks), then Fair Source applies.
        ui.sign_out().await;
        ui.sign_in("admin", ADMIN_PASSWORD).await;
        ui.click("#license-manage").await;
        ui.wait_path("/admin/license").await;
        ui.click("#license-remove").await;
        assert_eq!(attr(&ui.find("#license-status").await, "data-state").await, "grace", "removed without the box");
        ui.click("#license-remove-confirm").await;
        ui.mark_document().await;
        ui.click("#license-remove").await;
        ui.wait_new_document().await;
        assert_eq!(attr(&ui.find("#license-status").await, "data-kind").await, "fair-source");
        assert!(!ui.exists("#license-banner").await, "the banner stays after the license is removed");
        ui.screenshot("license-fair-source").await;
    })
    .await;
}
