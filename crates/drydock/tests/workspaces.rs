//! Workspaces on the real Docker engine, through the real server: start, files that
//! survive a stop, exec, failures that leave nothing behind, and a master that dies.

mod common;

use std::time::{Duration, Instant};

use common::workspace_story::{self, config, create, settled, start};
use common::{ADMIN_PASSWORD, answer, browser_like, docker_instance, field_value, sign_in};
use drydock_docker::testing::{instance_objects, kill_machine};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_in_projects_survive_a_stop() {
    let Some((mut dd, guard, image)) = docker_instance().await else { return };
    workspace_story::files_in_projects_survive_a_stop(&dd, guard.instance_id(), &image).await;
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_start_is_an_error_and_leaves_nothing() {
    let Some((mut dd, guard, image)) = docker_instance().await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let id = create(&dd, &admin, &config("broken", "drydock-test/no-such-image:never")).await;
    let ws = start(&dd, &admin, &id).await;
    assert_eq!(ws["status"], "ERROR", "{ws}");
    assert!(ws["attributes"]["errorMessage"].as_str().unwrap().contains("no-such-image"), "{ws}");
    let left = instance_objects(guard.instance_id()).await.unwrap();
    assert!(left.is_empty(), "nothing left behind: {left:?}");

    // A user who owns a running workspace is removed only when asked to take it along.
    let dora = dd.create_user(&admin, "dora", "dora-password").await;
    let dora_token = dd.token_for("dora", "dora-password").await;
    let r = dd
        .req(Method::POST, "/api/workspace?start-after-create=true")
        .bearer_auth(&dora_token)
        .json(&config("hers", &image))
        .send();
    let (status, made) = answer(r.await.unwrap()).await;
    assert_eq!((status, made["status"].as_str()), (StatusCode::CREATED, Some("STARTING")), "{made}");
    let hers = made["id"].as_str().unwrap().to_string();
    assert_eq!(settled(&dd, &dora_token, &hers).await["status"], "RUNNING");
    let remove = |query: &'static str| {
        dd.req(Method::DELETE, &format!("/api/user/{}{query}", dora["id"].as_str().unwrap())).bearer_auth(&admin).send()
    };
    let (status, body) = answer(remove("").await.unwrap()).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["message"].as_str().unwrap().contains("hers"), "{body}");
    assert_eq!(remove("?workspaces=keep").await.unwrap().status(), StatusCode::BAD_REQUEST);
    let (status, body) = answer(remove("?workspaces=delete").await.unwrap()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"deletedWorkspaces": ["hers"]})));
    let left = instance_objects(guard.instance_id()).await.unwrap();
    assert!(left.is_empty(), "her containers, network and volume went too: {left:?}");
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_machine_and_a_killed_master() {
    let Some((mut dd, guard, image)) = docker_instance().await else { return };
    let instance = guard.instance_id().to_string();
    let kill = |ws: String| {
        let instance = instance.clone();
        async move { kill_machine(&instance, &ws, "dev").await.unwrap() }
    };
    workspace_story::a_killed_machine_and_a_killed_master(&mut dd, &image, kill).await;
    dd.stop();
}

/// The Workspaces page: create and start from an image, see the status change, stop, delete
/// after confirming; the administrator sees the user's workspaces on the user's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workspaces_page() {
    let Some((mut dd, guard, image)) = docker_instance().await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let erin = dd.create_user(&admin, "erin", "erin-password").await;
    let browser = browser_like();
    sign_in(&dd, &browser, "erin", "erin-password").await;
    let home = browser.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("You have no workspaces yet") && home.contains("id=\"create-workspace-form\""), "{home}");
    let csrf = field_value(&home, "csrf").unwrap();

    let form = [("name", "web"), ("image", image.as_str()), ("csrf", csrf.as_str())];
    let r = browser.post(format!("{}/workspaces", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let table = browser.get(format!("{}/workspaces/table", dd.url)).send().await.unwrap().text().await.unwrap();
        assert!(table.contains("data-workspace=\"erin:web\""), "{table}");
        if table.contains("status-RUNNING") && table.contains("class=\"stop-workspace") {
            break;
        }
        assert!(Instant::now() < deadline, "never RUNNING: {table}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let taken = browser.post(format!("{}/workspaces", dd.url)).form(&form).send().await.unwrap();
    assert_eq!(taken.status(), StatusCode::CONFLICT);
    assert!(taken.text().await.unwrap().contains("id=\"create-error\""));

    let user_page =
        |b: &reqwest::Client| b.get(format!("{}/admin/users/{}", dd.url, erin["id"].as_str().unwrap())).send();
    let admin_browser = browser_like();
    sign_in(&dd, &admin_browser, "admin", ADMIN_PASSWORD).await;
    let details = user_page(&admin_browser).await.unwrap().text().await.unwrap();
    assert!(details.contains("data-workspace=\"erin:web\"") && details.contains("RUNNING"), "{details}");

    let (_, listed) =
        answer(dd.req(Method::GET, "/api/workspace/erin:web").bearer_auth(&admin).send().await.unwrap()).await;
    let id = listed["id"].as_str().unwrap().to_string();
    // The workspace's page: machines with their terminal; sharing by name.
    let page = browser.get(format!("{}/workspaces/{id}", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("data-machine=\"dev\"") && page.contains(&format!("/workspaces/{id}/terminal?machine=dev")),
        "{page}"
    );
    dd.create_user(&admin, "fred", "fred-password").await;
    let share = [("csrf", csrf.as_str()), ("user", "fred"), ("action-read", "on"), ("action-use", "on")];
    let r = browser.post(format!("{}/workspaces/{id}/share", dd.url)).form(&share).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let fred = dd.token_for("fred", "fred-password").await;
    let (_, mine) = answer(
        dd.req(Method::GET, &format!("/api/permissions/workspace?instance={id}"))
            .bearer_auth(&fred)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(mine["actions"], json!(["read", "use"]));
    let page = browser.get(format!("{}/workspaces/{id}", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("data-user=\"fred\"") && page.contains("read, use"), "{page}");
    let nobody = [("csrf", csrf.as_str()), ("user", "nobody"), ("action-read", "on")];
    let r = browser.post(format!("{}/workspaces/{id}/share", dd.url)).form(&nobody).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("id=\"share-error\""));
    let fred_id =
        dd.req(Method::GET, "/api/user").bearer_auth(&fred).send().await.unwrap().json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
    let unshare = [("csrf", csrf.as_str()), ("user", fred_id.as_str())];
    let r = browser.post(format!("{}/workspaces/{id}/unshare", dd.url)).form(&unshare).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        dd.req(Method::GET, &format!("/api/workspace/{id}")).bearer_auth(&fred).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let r =
        browser.post(format!("{}/workspaces/{id}/stop", dd.url)).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let table = browser.get(format!("{}/workspaces/table", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(table.contains("status-STOPPED") && table.contains("class=\"start-workspace"), "{table}");
    let dialog = browser
        .get(format!("{}/workspaces/{id}/delete", dd.url))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(dialog.contains("id=\"delete-workspace-dialog\"") && dialog.contains("erin:web"), "{dialog}");
    let r = browser
        .post(format!("{}/workspaces/{id}/delete", dd.url))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let home = browser.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(home.contains("Workspace erin:web deleted.") && home.contains("You have no workspaces yet"), "{home}");
    assert!(instance_objects(guard.instance_id()).await.unwrap().is_empty());
    dd.stop();
}
