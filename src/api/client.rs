//! A small client of the socket API: HTTP/1.1 over a Unix socket with hyper.
//!
//! The CLI (`telegate send`, `jobs`, `job`) and the tests speak to a running
//! telegate through it, so they exercise the same socket a service would.

use crate::config::Secret;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot connect to telegate at {path}: {source} (is `telegate run` serving this state directory?)"
    )]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP over {path}: {source}")]
    Http { path: PathBuf, source: hyper::Error },
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("the answer is not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

/// Where the socket is; each [`Client::connect`] opens one connection.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    /// The API key sent with every request, if any.
    key: Option<Secret>,
}

/// One answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Result<serde_json::Value, ClientError> {
        Ok(serde_json::from_slice(&self.body)?)
    }

    /// The `X-Request-Id` header.
    pub fn request_id(&self) -> Option<&str> {
        self.headers
            .get(super::request_id::HEADER)
            .and_then(|v| v.to_str().ok())
    }
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Client {
            socket: socket.into(),
            key: None,
        }
    }

    /// Sends `key` with every request (`X-Octopods-Auth`).
    pub fn with_key(mut self, key: Option<Secret>) -> Self {
        self.key = key;
        self
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Opens a keep-alive connection for several requests.
    pub async fn connect(&self) -> Result<Connection, ClientError> {
        let stream =
            UnixStream::connect(&self.socket)
                .await
                .map_err(|source| ClientError::Connect {
                    path: self.socket.clone(),
                    source,
                })?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| self.http(source))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Connection {
            sender,
            socket: self.socket.clone(),
            key: self.key.clone(),
        })
    }

    /// `GET path` on a connection of its own.
    pub async fn get(&self, path: &str) -> Result<Answer, ClientError> {
        self.connect().await?.get(path).await
    }

    /// `POST path` with a JSON body, on a connection of its own.
    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, ClientError> {
        self.connect().await?.post(path, headers, body).await
    }

    fn http(&self, source: hyper::Error) -> ClientError {
        ClientError::Http {
            path: self.socket.clone(),
            source,
        }
    }
}

/// An open connection; requests on it go one after the other.
pub struct Connection {
    sender: http1::SendRequest<Full<Bytes>>,
    socket: PathBuf,
    key: Option<Secret>,
}

impl Connection {
    pub async fn get(&mut self, path: &str) -> Result<Answer, ClientError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, ClientError> {
        self.send(Method::POST, path, headers, body.into()).await
    }

    /// Sends any request; `path` may carry a query string.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, HeaderValue::from_static("localhost"));
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(key) = &self.key {
            request = request.header(crate::api::auth::KEY_HEADER, key.expose());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body))?;
        let http = |source| ClientError::Http {
            path: self.socket.clone(),
            source,
        };
        self.sender.ready().await.map_err(http)?;
        let response = self.sender.send_request(request).await.map_err(http)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(http)?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}
