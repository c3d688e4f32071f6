//! The control API server: HTTP/1.1 (hyper on smol) over a [`Handle`] to the driver and
//! the daemon's [`Operator`]. `GET /v1/status`, `/v1/routes`, `/v1/peers`, `/v1/members`,
//! `/v1/keyring`, `/v1/topology` (JSON) and `/v1/topology.dot` (Graphviz), `/metrics`
//! (Prometheus text), `/v1/events` (a stream of operator events, server-sent events or
//! NDJSON), and `POST /v1/leave`, `/v1/reload` and `/v1/keyring`. A
//! request that changes state always needs a bearer token (see [`Access`]); one that only
//! reads needs it when a token is configured. The network page's static files (`GET /`,
//! see [`web`]) hold no data and are served without it. At most 32 connections are served
//! at once, and at most [`MAX_PER_CLIENT`] from one client address.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, HeaderValue, ORIGIN,
    WWW_AUTHENTICATE, X_CONTENT_TYPE_OPTIONS,
};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use overlay_core::Command;
use serde_json::{Value, json};
use smol::lock::Semaphore;
use smol::net::TcpListener;
use smol_hyper::rt::{FuturesIo, SmolTimer};
use tracing::{debug, info};

use crate::config::Settings;
use crate::driver::{Handle, View};
use crate::graph::Graph;
use crate::keyring::{self, Change};
use crate::keys::{self, KeyError};
use crate::operator::{Operator, Refused};
use crate::{metrics, web};

/// Control API connections served at once; more wait to be accepted.
const MAX_CONNECTIONS: usize = 32;
/// Connections one client address may hold at a time (a browser opens at most six).
#[cfg_attr(not(feature = "test-util"), allow(unreachable_pub))] // public in `testing`
pub const MAX_PER_CLIENT: usize = 8;
/// Time a client has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may use the control API: the bearer token every request needs (`rpc_token`, when
/// configured), and the one a state-changing request needs (that token, or else one the
/// daemon made at start and wrote to a file only its user can read, as a cookie).
#[derive(Debug, Clone)]
pub(crate) struct Access {
    /// Required by every request but the page's static files; `None` trusts the loopback.
    pub read: Option<String>,
    /// Required by requests that change state (`POST`).
    pub write: String,
    /// Where a client finds `write` when it is not configured (named in refusals).
    pub write_file: Option<String>,
}

impl Access {
    /// The access of a daemon with `settings`: its `rpc_token` for everything, or else a
    /// fresh random token for state-changing requests, written (mode 0600, atomically,
    /// replacing the last start's) to [`Settings::rpc_token_file`].
    pub(crate) fn create(settings: &Settings) -> Result<Access, KeyError> {
        if let Some(token) = &settings.rpc_token {
            return Ok(Access {
                read: Some(token.clone()),
                write: token.clone(),
                write_file: None,
            });
        }
        let write: String = keys::os_seed()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = settings.rpc_token_file();
        keys::write_atomically(&path, format!("{write}\n").as_bytes(), 0o600, true)?;
        Ok(Access {
            read: None,
            write,
            write_file: Some(path.display().to_string()),
        })
    }
}

/// What a request is answered with: a whole body, or a stream (`/v1/events`).
type Body = BoxBody<Bytes, Infallible>;

/// Largest request body read (a keyring change).
const MAX_REQUEST_BODY: usize = 4096;
/// Events a `/v1/events` client may fall behind before it loses some.
const EVENTS_QUEUE: usize = 1024;

/// Serves the control API on `listener` until the driver stops.
pub(crate) async fn serve(listener: TcpListener, operator: Arc<Operator>, access: Access) {
    let token = Arc::new(access);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let clients: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
    loop {
        let slot = slots.acquire_arc().await;
        let Ok((stream, peer)) = listener.accept().await else {
            smol::Timer::after(Duration::from_millis(100)).await;
            continue;
        };
        let Some(client) = ClientSlot::take(&clients, peer.ip()) else {
            debug!(%peer, "control API: too many connections from one client");
            continue;
        };
        let operator = operator.clone();
        let token = token.clone();
        smol::spawn(async move {
            let service = service_fn(move |req| {
                let operator = operator.clone();
                let token = token.clone();
                async move { Ok::<_, Infallible>(respond(req, &operator, &token).await) }
            });
            let served = http1::Builder::new()
                .timer(SmolTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(FuturesIo::new(stream), service)
                .await;
            if let Err(e) = served {
                debug!(%peer, error = %e, "control API connection ended");
            }
            drop((slot, client));
        })
        .detach();
    }
}

/// One of a client address's [`MAX_PER_CLIENT`] connections, given back when dropped.
struct ClientSlot {
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl ClientSlot {
    fn take(clients: &Arc<Mutex<HashMap<IpAddr, usize>>>, ip: IpAddr) -> Option<ClientSlot> {
        let mut held = clients.lock().unwrap_or_else(|e| e.into_inner());
        let count = held.entry(ip).or_default();
        if *count >= MAX_PER_CLIENT {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            clients: Arc::clone(clients),
            ip,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut held = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// Compares without leaking the position of the first difference through timing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized(req: &Request<Incoming>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| same_secret(given.as_bytes(), token.as_bytes()))
}

/// Whether `host` (with an optional port) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Without a token the API trusts the loopback, so it must not be reachable through a
/// browser: a `Host` that is not a loopback name means DNS rebinding, an `Origin` of
/// another site means cross-site request forgery. The CLI sends neither problem.
fn same_site(req: &Request<Incoming>) -> bool {
    let header = |name| {
        req.headers()
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let host_ok = header(HOST).is_none_or(loopback_host);
    let origin_ok = header(ORIGIN).is_none_or(|o| {
        o.strip_prefix("http://")
            .or_else(|| o.strip_prefix("https://"))
            .is_some_and(loopback_host)
    });
    host_ok && origin_ok
}

/// The refusal of a request without the token it needs.
fn unauthorized(access: &Access, changes_state: bool) -> Response<Body> {
    let message = match (&access.write_file, changes_state) {
        (Some(file), true) => format!(
            "this request changes state: it needs the bearer token in {file} \
             (the CLI's --token-file)"
        ),
        _ => "a valid bearer token is required".to_string(),
    };
    let mut response = error(StatusCode::UNAUTHORIZED, &message);
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

async fn respond(
    req: Request<Incoming>,
    operator: &Arc<Operator>,
    access: &Access,
) -> Response<Body> {
    if let (&Method::GET, Some(asset)) = (req.method(), web::asset(req.uri().path())) {
        return page(asset);
    }
    if access.read.is_none() && !same_site(&req) {
        return error(
            StatusCode::FORBIDDEN,
            "requests must name a loopback host and come from no other site",
        );
    }
    let changes_state = req.method() == Method::POST;
    let needed = if changes_state {
        Some(access.write.as_str())
    } else {
        access.read.as_deref()
    };
    if !authorized(&req, needed) {
        return unauthorized(access, changes_state);
    }
    let handle = &operator.handle;
    let method = req.method().clone();
    let answer = match (&method, req.uri().path()) {
        (&Method::GET, "/v1/events") => return events(&req, handle),
        (&Method::GET, "/v1/keyring") => Ok(json_reply(keyring::list(operator))),
        (&Method::POST, "/v1/keyring") => return change_keyring(req, operator).await,
        (&Method::POST, "/v1/reload") => {
            info!("reload requested over the control API");
            return match operator.reload().await {
                Ok(changed) => json_reply(json!({"reloaded": true, "changed": changed})),
                Err(e) => refused(&e),
            };
        }
        (&Method::GET, "/v1/status") => handle.inspect(|v| json_reply(status(v))).await,
        (&Method::GET, "/v1/routes") => handle.inspect(|v| json_reply(routes(v))).await,
        (&Method::GET, "/v1/peers") => {
            handle
                .inspect(|v| json_reply(keyed(v, "peers", json!(v.node.peers()))))
                .await
        }
        (&Method::GET, "/v1/members") => {
            handle
                .inspect(|v| json_reply(keyed(v, "members", json!(v.node.members()))))
                .await
        }
        (&Method::GET, "/v1/topology") => handle.inspect(|v| json_reply(json!(Graph::of(v)))).await,
        (&Method::GET, "/v1/topology.dot") => {
            handle
                .inspect(|v| text_reply(Graph::of(v).dot(), "text/vnd.graphviz; charset=utf-8"))
                .await
        }
        (&Method::GET, "/metrics") => {
            handle
                .inspect({
                    let counters = operator.counters.samples();
                    move |v| {
                        text_reply(
                            metrics::render(v, &counters),
                            "text/plain; version=0.0.4; charset=utf-8",
                        )
                    }
                })
                .await
        }
        (&Method::POST, "/v1/leave") => {
            let node = handle.inspect(|v| v.node.config().node_id).await;
            match node {
                Ok(node) => {
                    info!("leave requested over the control API");
                    handle.command(Command::Leave).await.map(|()| {
                        let mut r = json_reply(json!({"node": node, "leaving": true}));
                        *r.status_mut() = StatusCode::ACCEPTED;
                        r
                    })
                }
                Err(stopped) => Err(stopped),
            }
        }
        (
            _,
            "/v1/status" | "/v1/routes" | "/v1/peers" | "/v1/members" | "/v1/topology"
            | "/v1/topology.dot" | "/metrics" | "/v1/leave" | "/v1/reload" | "/v1/keyring"
            | "/v1/events",
        ) => {
            return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        }
        _ => return error(StatusCode::NOT_FOUND, "no such endpoint"),
    };
    answer.unwrap_or_else(|_| error(StatusCode::SERVICE_UNAVAILABLE, "the node has stopped"))
}

/// `POST /v1/keyring` with `{"change": "install"|"use"|"remove", "key": KEY}`.
async fn change_keyring(req: Request<Incoming>, operator: &Operator) -> Response<Body> {
    #[derive(serde::Deserialize)]
    struct Asked {
        change: Change,
        key: String,
    }
    let body = match Limited::new(req.into_body(), MAX_REQUEST_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            );
        }
    };
    match serde_json::from_slice::<Asked>(&body) {
        Ok(asked) => match keyring::apply(operator, asked.change, &asked.key).await {
            Ok(ring) => json_reply(ring),
            Err(e) => refused(&e),
        },
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            &format!("expected {{\"change\": \"install\"|\"use\"|\"remove\", \"key\": KEY}}: {e}"),
        ),
    }
}

/// `GET /v1/events`: operator events as they happen, as server-sent events when the client
/// accepts `text/event-stream`, else as NDJSON (one JSON object per line).
fn events(req: &Request<Incoming>, handle: &Handle) -> Response<Body> {
    let sse = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    let subscription = handle.events().subscribe(EVENTS_QUEUE);
    let stream = smol::stream::unfold(subscription.rx, move |rx| async move {
        let notice = rx.recv().await.ok()?;
        let json = serde_json::to_string(&*notice).unwrap_or_default();
        let line = if sse {
            format!("event: {}\ndata: {json}\n\n", notice.event)
        } else {
            format!("{json}\n")
        };
        Some((Ok(Frame::data(Bytes::from(line))), rx))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    let kind = if sse {
        "text/event-stream"
    } else {
        "application/x-ndjson"
    };
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The answer to a refused reload or keyring change: 422 (or 503 once stopped) with the
/// one-line reason.
fn refused(e: &Refused) -> Response<Body> {
    let status = match e {
        Refused::Stopped => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    error(status, &e.to_string())
}

fn json_reply(value: Value) -> Response<Body> {
    let mut body = serde_json::to_vec(&value).unwrap_or_default();
    body.push(b'\n');
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn text_reply(body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A file of the network page, which may load nothing from elsewhere.
fn page(asset: web::Asset) -> Response<Body> {
    let mut r = text_reply(asset.body, asset.content_type);
    let headers = r.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(web::CONTENT_SECURITY_POLICY),
    );
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    let mut r = json_reply(json!({ "error": message }));
    *r.status_mut() = status;
    r
}

/// `{"node": id, "asn": asn, <key>: value}`.
fn keyed(view: &View<'_>, key: &str, value: Value) -> Value {
    let config = view.node.config();
    let mut object = serde_json::Map::new();
    object.insert("node".into(), json!(config.node_id));
    object.insert("asn".into(), json!(config.asn));
    object.insert(key.into(), value);
    Value::Object(object)
}

/// The routing table in the public `routes --json` shape.
pub(crate) fn routes(view: &View<'_>) -> Value {
    keyed(view, "routes", json!(view.node.routes()))
}

fn status(view: &View<'_>) -> Value {
    let mut value = json!(view.node.status());
    if let Value::Object(object) = &mut value {
        object.insert("listen".into(), json!(view.node.config().listen_addr));
        object.insert(
            "uptime_ms".into(),
            json!(u64::try_from(view.uptime.as_millis()).unwrap_or(u64::MAX)),
        );
        object.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    }
    value
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn only_loopback_names_are_trusted_hosts() {
        for host in [
            "127.0.0.1:11450",
            "127.0.0.1",
            "localhost:80",
            "LOCALHOST",
            "[::1]:9",
            "127.8.9.10:1",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example:11450",
            "10.0.0.1:80",
            "[2001:db8::1]:9",
            "localhost.evil.example",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
