//! A real image registry for tests: Debian's `docker-registry` on a loopback (or given)
//! address with its storage in a temp dir, stopped and removed when dropped. Engines trust
//! registries on 127.0.0.0/8 without TLS; another address must be in the engine's
//! `--insecure-registry` list.
//!
//! Nothing here is used by drydock itself.

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `docker-registry` package puts the registry.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

/// A running registry.
pub struct TestRegistry {
    child: Child,
    /// The same registry (same storage, same address) served in other network namespaces.
    mirrors: Vec<Child>,
    dir: PathBuf,
    address: String,
}

impl TestRegistry {
    /// Starts a registry listening on `host` at a free port, and waits until it answers.
    pub fn start(host: &str) -> Result<TestRegistry, String> {
        if !std::path::Path::new(REGISTRY_BINARY).exists() {
            return Err(format!("{REGISTRY_BINARY} is missing (install Debian's docker-registry)"));
        }
        let port = TcpListener::bind((host, 0)).and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
        let address = format!("{host}:{port}");
        let dir = std::env::temp_dir().join(format!("drydock-registry-{}", crate::testing::test_instance_id()));
        std::fs::create_dir_all(dir.join("storage")).map_err(|e| e.to_string())?;
        let config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).map_err(|e| e.to_string())?;
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting {REGISTRY_BINARY}: {e}"))?;
        let registry = TestRegistry { child, mirrors: Vec::new(), dir, address };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.get("/v2/").is_err() {
            if Instant::now() > deadline {
                return Err(format!("the registry at {} did not answer within 20 s", registry.address));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    /// Serves the same registry, at the same loopback address, inside a network namespace
    /// (`/var/run/netns/<name>`), so that an engine there pulls from it as from its own
    /// loopback (engines trust 127.0.0.0/8 without TLS).
    pub fn serve_in_netns(&mut self, netns: &str) -> Result<(), String> {
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{netns}"))
            .arg(REGISTRY_BINARY)
            .arg("serve")
            .arg(self.dir.join("config.yml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("starting the registry in {netns}: {e}"))?;
        self.mirrors.push(child);
        // Its answer is checked from inside the namespace, with busybox's wget.
        let url = format!("http://{}/v2/", self.address);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let answered = Command::new("nsenter")
                .arg(format!("--net=/var/run/netns/{netns}"))
                .args([crate::testing::BUSYBOX, "wget", "-q", "-O", "/dev/null", &url])
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("the registry in {netns} did not answer within 20 s"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The body of a GET on the registry's API (`/v2/_catalog`).
    pub fn get(&self, path: &str) -> Result<String, String> {
        let mut stream = TcpStream::connect(&self.address).map_err(|e| e.to_string())?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.address);
        std::io::Write::write_all(&mut stream, request.as_bytes()).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
        match answer.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200") => {
                Ok(body.to_string())
            }
            _ => Err(format!("GET {path}: {}", answer.lines().next().unwrap_or_default())),
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        // The local engine's tags for this registry (its port is this run's own) go too.
        let prefix = format!("{}/", self.address);
        let listed = Command::new("docker").args(["images", "--format", "{{.Repository}}:{{.Tag}}"]).output();
        if let Ok(listed) = listed {
            for tag in String::from_utf8_lossy(&listed.stdout).lines().filter(|t| t.starts_with(&prefix)) {
                let _ = Command::new("docker").args(["rmi", tag]).output();
            }
        }
        for child in self.mirrors.iter_mut().chain(std::iter::once(&mut self.child)) {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
