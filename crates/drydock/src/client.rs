//! The CLI's client for the running server's API. On the master host it finds the server
//! through the data dir (`drydock.url`) and uses the first admin's token from `secrets/`;
//! from elsewhere, `--url` (or `DRYDOCK_URL`) and `DRYDOCK_TOKEN`.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::instance::{ADMIN_TOKEN_SECRET, DataDir};

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Reached through the data dir (then a self-signed certificate is accepted).
    local: bool,
}

/// A WebSocket to the server.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

impl Client {
    pub fn connect(dir: &DataDir, url: Option<&str>) -> Result<Client> {
        let local = url.is_none();
        let base = match url {
            Some(u) => u.trim_end_matches('/').to_string(),
            None => dir.running_url().ok_or_else(|| {
                anyhow!(
                    "no running drydock in {}: start it with `drydock start`, or reach another with --url and DRYDOCK_TOKEN",
                    dir.root.display()
                )
            })?,
        };
        let token = match (std::env::var("DRYDOCK_TOKEN"), std::env::var("DRYDOCK_TOKEN_FILE")) {
            (Ok(t), _) if !t.is_empty() => t,
            (_, Ok(f)) if !f.is_empty() => std::fs::read_to_string(&f)
                .with_context(|| format!("DRYDOCK_TOKEN_FILE: cannot read {f}"))?
                .trim()
                .to_string(),
            _ if local => dir.read_secret(ADMIN_TOKEN_SECRET).context("cannot read the administrator's CLI token")?,
            _ => bail!("set DRYDOCK_TOKEN (or DRYDOCK_TOKEN_FILE) to a token of an account on {base}"),
        };
        let http = reqwest::Client::builder()
            // The local server may use a self-signed certificate; a remote one must not.
            .danger_accept_invalid_certs(local)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, base, token, local })
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token)
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let response = req.send().await.with_context(|| format!("cannot reach drydock at {}", self.base))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let message = body.get("message").and_then(Value::as_str).unwrap_or("no details");
        Err(ApiFailure { status, message: message.to_string() }.into())
    }

    /// A request without a body; the response as it came (for headers, streams, no content).
    pub async fn call(&self, method: Method, path: &str) -> Result<Response> {
        self.send(self.request(method, path)).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.send(self.request(Method::GET, path)).await?.json().await?)
    }

    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T> {
        Ok(self.send(self.request(method, path).json(body)).await?.json().await?)
    }

    /// A request with a text body (`text/plain`), answered with JSON.
    pub async fn send_text<T: DeserializeOwned>(&self, method: Method, path: &str, body: String) -> Result<T> {
        let req = self.request(method, path).header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8");
        Ok(self.send(req.body(body)).await?.json().await?)
    }

    pub async fn send_no_content<B: Serialize>(&self, method: Method, path: &str, body: Option<&B>) -> Result<()> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.send(req).await.map(|_| ())
    }

    /// Opens a WebSocket to `path` (`ws://` or `wss://` after the base URL's scheme), with
    /// the token in the handshake's `Authorization` header. A refused handshake is an
    /// [`ApiFailure`] like any other error answer.
    pub async fn websocket(&self, path: &str) -> Result<Socket> {
        let url = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}{path}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}{path}")
        } else {
            bail!("the server's URL {} is neither http:// nor https://", self.base)
        };
        let mut request = url.as_str().into_client_request().with_context(|| format!("bad WebSocket URL {url}"))?;
        let auth =
            HeaderValue::from_str(&format!("Bearer {}", self.token)).context("the token is not a header value")?;
        request.headers_mut().insert("authorization", auth);
        let connector =
            (self.local && url.starts_with("wss://")).then(|| Connector::Rustls(Arc::new(any_certificate())));
        match tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector).await {
            Ok((socket, _)) => Ok(socket),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
                let body: Value =
                    response.body().as_deref().and_then(|b| serde_json::from_slice(b).ok()).unwrap_or(Value::Null);
                let message = body.get("message").and_then(Value::as_str).unwrap_or("no details");
                Err(ApiFailure { status, message: message.to_string() }.into())
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("cannot reach drydock at {}", self.base))),
        }
    }
}

/// A TLS client config that accepts any certificate: only for the local server, which may
/// use a self-signed one (as the HTTP client does with `danger_accept_invalid_certs`).
fn any_certificate() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An error answer of the API, kept typed so callers can tell "not found" apart.
#[derive(Debug, thiserror::Error)]
#[error("{message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
}

pub fn is_not_found(e: &anyhow::Error) -> bool {
    e.downcast_ref::<ApiFailure>().is_some_and(|f| f.status == StatusCode::NOT_FOUND)
}

/// Percent-encodes a value for a query string or path segment.
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
