//! The control API client used by the CLI subcommands (`status`, `routes`, `members`,
//! `leave`, `reload`, `keyring`, ...): one HTTP/1.1 request per call over hyper on smol,
//! bounded in time; and the unbounded stream of `/v1/events` (`watch`).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, HOST};
use hyper::{Method, Request};
use smol::future;
use smol::net::TcpStream;
use smol_hyper::rt::FuturesIo;
use thiserror::Error;

/// Time allowed for one request, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A request that did not get a successful answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Nothing answers at the address.
    #[error("cannot reach the control API at {addr}: {message}")]
    Unreachable {
        /// The RPC address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The HTTP exchange failed.
    #[error("control API at {addr}: {message}")]
    Http {
        /// The RPC address.
        addr: String,
        /// Why.
        message: String,
    },
    /// The daemon answered with an error status.
    #[error("control API at {addr} answered {status}: {body}")]
    Status {
        /// The RPC address.
        addr: String,
        /// HTTP status code.
        status: u16,
        /// The answer's body.
        body: String,
    },
}

/// What a stream's chunks are handed to; it returns false to stop.
type Chunks<'a> = dyn FnMut(&[u8]) -> bool + 'a;

/// A client of one daemon's control API.
#[derive(Debug, Clone)]
pub struct Client {
    addr: String,
    token: Option<String>,
}

impl Client {
    /// A client for the API at `addr` (`ip:port`), sending `token` as a bearer token.
    pub fn new(addr: impl Into<String>, token: Option<String>) -> Self {
        Client {
            addr: addr.into(),
            token,
        }
    }

    /// `GET path`; the body of a 2xx answer.
    pub fn get(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        smol::block_on(self.request(Method::GET, path))
    }

    /// `POST path` with an empty body; the body of a 2xx answer.
    pub fn post(&self, path: &str) -> Result<Vec<u8>, ClientError> {
        smol::block_on(self.request(Method::POST, path))
    }

    /// `POST path` with a JSON body; the body of a 2xx answer. `timeout` bounds it (a
    /// reload may take a while on a large cluster).
    pub fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        let body = Bytes::from(body.to_string());
        smol::block_on(self.bounded(self.exchange(Method::POST, path, body, None), timeout))
    }

    /// `GET path` of a stream (`/v1/events`): calls `line` with each line as it arrives
    /// until it returns false or the daemon ends the stream. Not bounded in time.
    pub fn stream(
        &self,
        path: &str,
        mut line: impl FnMut(&str) -> bool,
    ) -> Result<(), ClientError> {
        let mut pending = Vec::new();
        let mut each = |chunk: &[u8]| {
            pending.extend_from_slice(chunk);
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let text: Vec<u8> = pending.drain(..=end).collect();
                if !line(String::from_utf8_lossy(&text).trim_end()) {
                    return false;
                }
            }
            true
        };
        smol::block_on(self.exchange(Method::GET, path, Bytes::new(), Some(&mut each))).map(|_| ())
    }

    /// One request, bounded by [`TIMEOUT`].
    pub async fn request(&self, method: Method, path: &str) -> Result<Vec<u8>, ClientError> {
        self.bounded(self.exchange(method, path, Bytes::new(), None), TIMEOUT)
            .await
    }

    async fn bounded(
        &self,
        exchange: impl std::future::Future<Output = Result<Vec<u8>, ClientError>>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        future::or(exchange, async {
            smol::Timer::after(timeout).await;
            Err(self.http(format!("no answer within {timeout:?}")))
        })
        .await
    }

    fn http(&self, message: impl ToString) -> ClientError {
        ClientError::Http {
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }

    /// One request with `body`; the answer's body, or with `chunks`, each chunk of a 2xx
    /// answer handed to it as it arrives (until it returns false).
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        chunks: Option<&mut Chunks<'_>>,
    ) -> Result<Vec<u8>, ClientError> {
        let stream =
            TcpStream::connect(self.addr.as_str())
                .await
                .map_err(|e| ClientError::Unreachable {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(FuturesIo::new(stream))
                .await
                .map_err(|e| self.http(e))?;
        let connection = smol::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.as_str());
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if !body.is_empty() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body)).map_err(|e| self.http(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.http(e))?;
        let status = response.status();
        let mut answer = response.into_body();
        let body = match chunks {
            Some(chunks) if status.is_success() => {
                while let Some(frame) = answer.frame().await {
                    let frame = frame.map_err(|e| self.http(e))?;
                    if let Some(data) = frame.data_ref()
                        && !chunks(data)
                    {
                        return Ok(Vec::new());
                    }
                }
                Vec::new()
            }
            _ => answer
                .collect()
                .await
                .map_err(|e| self.http(e))?
                .to_bytes()
                .to_vec(),
        };
        drop(sender);
        let _ = connection.await;
        if status.is_success() {
            Ok(body)
        } else {
            Err(ClientError::Status {
                addr: self.addr.clone(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).trim().to_string(),
            })
        }
    }
}
