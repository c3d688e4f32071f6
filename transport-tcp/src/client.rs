//! The control API client used by the CLI subcommands (`status`, `routes`, `peers`,
//! `leave`): one HTTP/1.1 request per call over hyper on smol, bounded in time.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
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

    /// One request, bounded by [`TIMEOUT`].
    pub async fn request(&self, method: Method, path: &str) -> Result<Vec<u8>, ClientError> {
        let exchange = self.exchange(method, path);
        future::or(exchange, async {
            smol::Timer::after(TIMEOUT).await;
            Err(self.http(format!("no answer within {TIMEOUT:?}")))
        })
        .await
    }

    fn http(&self, message: impl ToString) -> ClientError {
        ClientError::Http {
            addr: self.addr.clone(),
            message: message.to_string(),
        }
    }

    async fn exchange(&self, method: Method, path: &str) -> Result<Vec<u8>, ClientError> {
        let stream =
            TcpStream::connect(self.addr.as_str())
                .await
                .map_err(|e| ClientError::Unreachable {
                    addr: self.addr.clone(),
                    message: e.to_string(),
                })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(FuturesIo::new(stream))
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
        let request = request.body(Empty::new()).map_err(|e| self.http(e))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| self.http(e))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| self.http(e))?
            .to_bytes()
            .to_vec();
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
