//! The browser harness: a fresh SQLite instance, a `chromedriver` of its own on a free port and
//! one headless Chromium session driven with thirtyfour. `Ui::run` runs a test body, saves a
//! screenshot (and the page's HTML) when it fails, and always quits the session and stops
//! chromedriver before the failure propagates.

use std::future::Future;
use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use thirtyfour::prelude::*;

use super::{Backend, Instance};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const SESSION_COOKIE: &str = "drydock_session";

/// How long any wait for the page lasts before the test fails.
const WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,800",
];

/// Whether Chromium and chromedriver are installed. Under CI a missing browser fails the
/// test; elsewhere the test says it skipped.
pub fn browser_available() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER].into_iter().filter(|p| !Path::new(p).exists()).collect();
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join(" and ");
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{missing} not found under CI=true: install them with \
             `apt-get install chromium chromium-driver` (`bash .ci/run` does)"
        );
    }
    eprintln!("SKIPPED: {missing} not found (install the Debian packages chromium and chromium-driver)");
    false
}

/// Where screenshots go: `<workspace>/target/screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    workspace.canonicalize().unwrap_or_else(|_| workspace.to_path_buf()).join("target").join("screenshots")
}

/// A chromedriver process of our own, killed when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Chromedriver {
    /// Starts chromedriver on a free port, logging to `log`, and waits until it is ready.
    async fn spawn(log: &Path) -> Chromedriver {
        // A free port can be taken by someone else before chromedriver binds it: try again.
        for _ in 0..3 {
            let port = free_port();
            let child = Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver runs");
            let mut driver = Chromedriver { child, url: format!("http://127.0.0.1:{port}") };
            if driver.wait_ready().await {
                return driver;
            }
        }
        panic!("chromedriver did not start; its log: {}", std::fs::read_to_string(log).unwrap_or_default());
    }

    /// Waits until `/status` says ready; false when the process exits first.
    async fn wait_ready(&mut self) -> bool {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.child.try_wait().expect("chromedriver status").is_some() {
                return false;
            }
            if let Ok(r) = http.get(format!("{}/status", self.url)).timeout(Duration::from_secs(2)).send().await
                && let Ok(body) = r.json::<Value>().await
                && body["value"]["ready"] == Value::Bool(true)
            {
                return true;
            }
            assert!(Instant::now() < deadline, "chromedriver at {} did not answer /status within 20 s", self.url);
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().unwrap().port()
}

/// One browser test: a running drydock instance and a Chromium session pointed at it.
pub struct Ui {
    pub dd: Instance,
    pub driver: WebDriver,
    test: String,
    // Dropped after `driver`, whose own drop ends the session if `run` never quit it.
    chromedriver: Chromedriver,
    /// Chromium's profile and chromedriver's log; removed last.
    dir: tempfile::TempDir,
}

impl Ui {
    /// A fresh SQLite instance, started, and a browser session. `None` when the browser is
    /// missing outside CI (the test then returns early).
    pub async fn start(test: &str) -> Option<Ui> {
        Self::start_with(test, &[]).await
    }

    /// Like [`Ui::start`], with config variables for the instance.
    pub async fn start_with(test: &str, env: &[(&str, &str)]) -> Option<Ui> {
        if !browser_available() {
            return None;
        }
        // A failure of an earlier run must not pass for one of this run.
        for ext in ["png", "html"] {
            let _ = std::fs::remove_file(screenshot_dir().join(format!("{test}-failure.{ext}")));
        }
        let mut dd = Instance::init_with(Backend::Sqlite, env)?;
        dd.start().await;
        let dir = tempfile::tempdir().expect("temp dir for the browser");
        let log = dir.path().join("chromedriver.log");
        let chromedriver = Chromedriver::spawn(&log).await;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary(CHROMIUM).unwrap();
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg).unwrap();
        }
        let profile = dir.path().join("profile");
        caps.add_arg(&format!("--user-data-dir={}", profile.display())).unwrap();
        let driver = match WebDriver::new(chromedriver.url.clone(), caps).await {
            Ok(driver) => driver,
            Err(e) => panic!(
                "no Chromium session: {e}; chromedriver's log: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        };
        driver.set_page_load_timeout(Duration::from_secs(30)).await.unwrap();
        driver.set_script_timeout(Duration::from_secs(10)).await.unwrap();
        Some(Ui { dd, driver, test: test.to_string(), chromedriver, dir })
    }

    /// Runs the test body. When it panics, saves `<test>-failure.png` and `.html`; in every
    /// case quits the browser and stops chromedriver and the server, then lets the panic go on.
    pub async fn run(self, body: impl AsyncFnOnce(&Ui)) {
        let outcome = AssertUnwindSafe(body(&self)).catch_unwind().await;
        if outcome.is_err() {
            match self.try_screenshot("failure").await {
                Ok(path) => eprintln!("failure screenshot: {}", path.display()),
                Err(e) => eprintln!("no failure screenshot: {e}"),
            }
            if let Ok(html) = self.driver.source().await {
                let path = screenshot_dir().join(format!("{}-failure.html", self.test));
                if std::fs::write(&path, html).is_ok() {
                    eprintln!("failure page source: {}", path.display());
                }
            }
        }
        let Ui { dd, driver, chromedriver, dir, .. } = self;
        if let Err(e) = driver.quit().await {
            eprintln!("quitting the browser session failed: {e}");
        }
        drop(chromedriver);
        drop(dir);
        drop(dd);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    // ---- Screenshots ----

    async fn try_screenshot(&self, step: &str) -> Result<PathBuf, String> {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let path = dir.join(format!("{}-{step}.png", self.test));
        let png = self.driver.screenshot_as_png().await.map_err(|e| e.to_string())?;
        std::fs::write(&path, png).map_err(|e| format!("write {}: {e}", path.display()))?;
        Ok(path)
    }

    /// Saves `target/screenshots/<test>-<step>.png`.
    pub async fn screenshot(&self, step: &str) {
        let path = self.try_screenshot(step).await.unwrap_or_else(|e| panic!("screenshot {step}: {e}"));
        eprintln!("screenshot: {}", path.display());
    }

    // ---- Waiting ----

    /// Polls `probe` until it gives a value; fails the test after the deadline, naming what it
    /// waited for and the page it was on.
    pub async fn until<T>(&self, what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() >= deadline {
                let url = self.driver.current_url().await.map(|u| u.to_string()).unwrap_or_default();
                panic!("waited {} s for {what}, on {url}", WAIT.as_secs());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element, once it is in the page.
    pub async fn find(&self, css: &str) -> WebElement {
        self.until(&format!("`{css}` to be in the page"), async || self.driver.find(By::Css(css)).await.ok()).await
    }

    /// The element, once it is in the page and displayed.
    pub async fn visible(&self, css: &str) -> WebElement {
        self.until(&format!("`{css}` to be displayed"), async || {
            let el = self.driver.find(By::Css(css)).await.ok()?;
            el.is_displayed().await.ok()?.then_some(el)
        })
        .await
    }

    /// Waits until no element matches.
    pub async fn gone(&self, css: &str) {
        self.until(&format!("`{css}` to leave the page"), async || {
            self.driver.find_all(By::Css(css)).await.ok()?.is_empty().then_some(())
        })
        .await
    }

    /// Waits until no element matches or none is displayed.
    pub async fn hidden(&self, css: &str) {
        self.until(&format!("`{css}` to be hidden"), async || {
            for el in self.driver.find_all(By::Css(css)).await.ok()? {
                if el.is_displayed().await.unwrap_or(false) {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Whether an element matches right now.
    pub async fn exists(&self, css: &str) -> bool {
        !self.driver.find_all(By::Css(css)).await.expect("find elements").is_empty()
    }

    /// The element's visible text, trimmed, once it is displayed.
    pub async fn text(&self, css: &str) -> String {
        self.visible(css).await.text().await.expect("element text").trim().to_string()
    }

    /// Waits until the element's trimmed text is `expected`.
    pub async fn wait_text(&self, css: &str, expected: &str) {
        let mut last = String::new();
        let found = self
            .until_or_none(async || {
                let text = self.driver.find(By::Css(css)).await.ok()?.text().await.ok()?;
                last = text.trim().to_string();
                (last == expected).then_some(())
            })
            .await;
        assert!(found.is_some(), "`{css}` should read {expected:?}; it reads {last:?}");
    }

    /// Like `until`, but gives `None` at the deadline instead of failing.
    pub async fn until_or_none<T>(&self, mut probe: impl AsyncFnMut() -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = probe().await {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    // ---- Acting ----

    pub async fn goto(&self, path: &str) {
        let url = format!("{}{path}", self.dd.url);
        self.driver.goto(&url).await.unwrap_or_else(|e| panic!("open {url}: {e}"));
    }

    /// The path of the page shown.
    pub async fn path(&self) -> String {
        self.driver.current_url().await.expect("current url").path().to_string()
    }

    pub async fn wait_path(&self, path: &str) {
        let mut last = String::new();
        let found = self
            .until_or_none(async || {
                last = self.driver.current_url().await.ok()?.path().to_string();
                (last == path).then_some(())
            })
            .await;
        assert!(found.is_some(), "the browser should be at {path}; it is at {last}");
    }

    /// Clicks the element once it is displayed (retrying while something covers it).
    pub async fn click(&self, css: &str) {
        self.until(&format!("`{css}` to take a click"), async || {
            let el = self.driver.find(By::Css(css)).await.ok()?;
            if !el.is_displayed().await.ok()? {
                return None;
            }
            el.click().await.ok()
        })
        .await
    }

    /// Replaces the text of an input.
    pub async fn fill(&self, css: &str, text: &str) {
        let el = self.visible(css).await;
        el.clear().await.unwrap_or_else(|e| panic!("clear {css}: {e}"));
        el.send_keys(text).await.unwrap_or_else(|e| panic!("type into {css}: {e}"));
    }

    /// Runs JavaScript (a function body: `return …`) and gives its result.
    pub async fn js(&self, script: &str) -> Value {
        self.driver.execute(script, Vec::new()).await.unwrap_or_else(|e| panic!("script {script}: {e}")).json().clone()
    }

    /// The attribute `attr` of every element matching `css`, in document order.
    pub async fn attrs(&self, css: &str, attr: &str) -> Vec<String> {
        let script = format!(
            "return [...document.querySelectorAll({})].map(e => e.getAttribute({}))",
            serde_json::to_string(css).unwrap(),
            serde_json::to_string(attr).unwrap()
        );
        let value = self.js(&script).await;
        value.as_array().unwrap().iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect()
    }

    /// Removes the matching elements from the page, so that a wait for them afterwards sees
    /// only what the next action renders.
    pub async fn forget(&self, css: &str) {
        let css = serde_json::to_string(css).unwrap();
        self.js(&format!("document.querySelectorAll({css}).forEach(e => e.remove()); return null")).await;
    }

    /// Marks the current document; `wait_new_document` then waits for a navigation away from it.
    pub async fn mark_document(&self) {
        self.js("window.__drydockOldDocument = true; return null").await;
    }

    pub async fn wait_new_document(&self) {
        self.until("the browser to load the next page", async || {
            let v = self
                .driver
                .execute("return !window.__drydockOldDocument && document.readyState === 'complete'", Vec::new())
                .await
                .ok()?;
            (v.json() == &Value::Bool(true)).then_some(())
        })
        .await
    }

    // ---- Signing in ----

    /// Fills the sign-in form at `/` and submits it; waits for the next page to load.
    pub async fn submit_sign_in(&self, username: &str, password: &str) {
        if !self.exists("form#signin").await {
            self.goto("/").await;
        }
        self.fill("input#username", username).await;
        self.fill("input#password", password).await;
        self.mark_document().await;
        self.click("button#signin-submit").await;
        self.wait_new_document().await;
    }

    /// Signs in through the form and waits for the signed-in layout.
    pub async fn sign_in(&self, username: &str, password: &str) {
        self.submit_sign_in(username, password).await;
        if let Ok(error) = self.driver.find(By::Css("#signin-error")).await {
            panic!("signing in as {username} failed: {:?}", error.text().await.unwrap_or_default());
        }
        self.visible("nav#nav").await;
    }

    pub async fn sign_out(&self) {
        self.click("button#signout-submit").await;
        self.visible("form#signin").await;
    }

    /// The browser's session cookie.
    pub async fn session_cookie(&self) -> String {
        self.driver.get_named_cookie(SESSION_COOKIE).await.expect("the session cookie").value
    }

    /// A request to the instance outside the browser, carrying the browser's session cookie
    /// and following no redirects (so the status is the page's own).
    pub async fn http_as_browser(&self, method: Method, path: &str) -> RequestBuilder {
        let cookie = self.session_cookie().await;
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        client.request(method, format!("{}{path}", self.dd.url)).header("Cookie", format!("{SESSION_COOKIE}={cookie}"))
    }

    /// The HTTP status of a GET of `path` with the browser's session.
    pub async fn status_of(&self, path: &str) -> StatusCode {
        self.http_as_browser(Method::GET, path).await.send().await.expect("GET with the session cookie").status()
    }
}

/// Runs the futures to completion, at most `width` at a time.
pub async fn in_batches<F: Future<Output = ()>>(futures: impl IntoIterator<Item = F>, width: usize) {
    use futures::StreamExt;
    futures::stream::iter(futures).buffer_unordered(width).collect::<Vec<()>>().await;
}
