//! A fault-injecting HTTP proxy in front of the local stack: what DynamoDB and SQS do on a bad
//! day, switched at runtime.
//!
//! The SDK is pointed at the proxy's [`endpoint`](FaultProxy::endpoint) instead of moto's; every
//! request is forwarded unchanged unless a fault is on for its service (told by the
//! `X-Amz-Target` header: `DynamoDB_20120810.*` or `AmazonSQS.*`):
//!
//! | fault | what the client sees |
//! |---|---|
//! | [`Fault::Throttle`] | HTTP 400 with DynamoDB's own `ProvisionedThroughputExceededException` or `ThrottlingException` body (alternating), or SQS's `ThrottlingException` |
//! | [`Fault::Hang`] | the request is read and never answered (the connection is held until the fault is switched off, then reset) |
//! | [`Fault::Reset`] | the connection is reset (RST) without an answer |
//! | [`Fault::LoseWrite`] | once: the next write (`PutItem`, `SendMessage`, ...) is done, its answer lost (the connection reset); then back to `Ok` |
//!
//! Besides faults, [`Faults::duplicate_sends_to`] forwards every `SendMessage` /
//! `SendMessageBatch` to a queue whose URL ends with that suffix twice (every result delivered
//! twice).
//!
//! Switched in process ([`FaultProxy::set`]) or over HTTP on the proxy's own port, for scripts:
//! `curl -X POST "$PROXY/__fault?dynamodb=throttle&sqs=reset&dup=-results"` (any of the three;
//! `ok` switches a service back; `GET /__fault` shows the state and counts). The binary
//! `cairn-fault-proxy` runs one standalone. Moto closes every connection after its answer, and
//! so does the proxy: one request per connection.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What happens to a service's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Fault {
    /// Forwarded unchanged.
    #[default]
    Ok,
    /// Answered with the service's throttling error (HTTP 400).
    Throttle,
    /// Never answered.
    Hang,
    /// Connection reset.
    Reset,
    /// Once: the next write request is forwarded (it takes effect) and its answer dropped
    /// (connection reset), as when a response is lost on the way; then back to `Ok`.
    LoseWrite,
}

impl std::str::FromStr for Fault {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ok" | "none" | "off" => Self::Ok,
            "throttle" => Self::Throttle,
            "hang" => Self::Hang,
            "reset" | "cut" => Self::Reset,
            other => {
                return Err(format!(
                    "unknown fault {other:?} (ok, throttle, hang, reset)"
                ))
            }
        })
    }
}

/// The proxy's switches.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// DynamoDB requests.
    pub dynamodb: Fault,
    /// SQS requests.
    pub sqs: Fault,
    /// Sends to a queue whose URL ends with this are forwarded twice.
    pub duplicate_sends_to: Option<String>,
}

/// The AWS service of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    DynamoDb,
    Sqs,
    Other,
}

/// A running proxy; stopped on drop.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    counts: Mutex<BTreeMap<String, u64>>,
    turn: AtomicU64,
}

impl Shared {
    fn count(&self, key: impl Into<String>) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(key.into()).or_default() += 1;
        }
    }
}

impl FaultProxy {
    /// A proxy on a free local port in front of `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        Self::bind(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            upstream,
        )
        .await
    }

    /// A proxy listening on `listen` in front of `upstream` (`http://host:port`).
    pub async fn bind(listen: SocketAddr, upstream: &str) -> std::io::Result<Self> {
        let upstream = upstream_addr(upstream).await?;
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (faults, _) = watch::channel(Faults::default());
        let shared = Arc::new(Shared {
            upstream,
            faults,
            counts: Mutex::new(BTreeMap::new()),
            turn: AtomicU64::new(0),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let shared = accepting.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(client, &shared).await {
                        tracing::debug!(error = %e, "fault proxy: connection ended");
                    }
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The endpoint to give the SDK (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Switches the faults (held requests of a fault switched off are reset).
    pub fn set(&self, faults: Faults) {
        tracing::info!(?faults, "fault proxy: faults switched");
        self.shared.faults.send_replace(faults);
    }

    /// Switches DynamoDB's fault alone.
    pub fn set_dynamodb(&self, fault: Fault) {
        self.shared.faults.send_modify(|f| f.dynamodb = fault);
    }

    /// Switches SQS's fault alone.
    pub fn set_sqs(&self, fault: Fault) {
        self.shared.faults.send_modify(|f| f.sqs = fault);
    }

    /// The current switches.
    pub fn faults(&self) -> Faults {
        self.shared.faults.borrow().clone()
    }

    /// Requests seen, by `<service> <fault>` (`dynamodb throttle`, `sqs ok`, `duplicated`).
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared
            .counts
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Runs until the process ends (the standalone binary).
    pub async fn wait(self) {
        let _ = (&mut { self }.task).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream_addr(upstream: &str) -> std::io::Result<SocketAddr> {
    let host = upstream
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut addrs = tokio::net::lookup_host(host.as_str()).await?;
    addrs
        .next()
        .ok_or_else(|| std::io::Error::other(format!("cannot resolve {upstream}")))
}

/// One request read from a client: the raw bytes and what the proxy needs of them.
struct Request {
    raw: Vec<u8>,
    path: String,
    target: String,
    body_start: usize,
}

const MAX_REQUEST: usize = 16 * 1024 * 1024;

async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut raw = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        raw.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        let status = request
            .parse(&raw)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        if let httparse::Status::Complete(body_start) = status {
            let header = |name: &str| {
                request
                    .headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case(name))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            };
            let length: usize = header("content-length")
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            let target = header("x-amz-target").unwrap_or_default();
            let path = request.path.unwrap_or("/").to_owned();
            if body_start + length > MAX_REQUEST {
                return Err(std::io::Error::other("request too large"));
            }
            while raw.len() < body_start + length {
                let n = client.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(None);
                }
                raw.extend_from_slice(&chunk[..n]);
            }
            return Ok(Some(Request {
                raw,
                path,
                target,
                body_start,
            }));
        }
        if raw.len() > MAX_REQUEST {
            return Err(std::io::Error::other("request head too large"));
        }
    }
}

async fn serve(mut client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    if request.path.starts_with("/__fault") {
        return control(client, &request, shared).await;
    }
    let service = if request.target.starts_with("DynamoDB_") {
        Service::DynamoDb
    } else if request.target.starts_with("AmazonSQS.") {
        Service::Sqs
    } else {
        Service::Other
    };
    let faults = shared.faults.borrow().clone();
    let (name, fault) = match service {
        Service::DynamoDb => ("dynamodb", faults.dynamodb),
        Service::Sqs => ("sqs", faults.sqs),
        Service::Other => ("other", Fault::Ok),
    };
    shared.count(format!("{name} {fault:?}").to_lowercase());
    let write = [
        "PutItem",
        "UpdateItem",
        "DeleteItem",
        "TransactWriteItems",
        "BatchWriteItem",
        "SendMessage",
        "SendMessageBatch",
    ]
    .iter()
    .any(|op| request.target.rsplit('.').next() == Some(*op));
    match fault {
        Fault::LoseWrite if write => {
            // Once: switched off before forwarding, so only this request is lost.
            shared.faults.send_modify(|f| match service {
                Service::DynamoDb => f.dynamodb = Fault::Ok,
                _ => f.sqs = Fault::Ok,
            });
            let _ = forward(&request.raw, shared.upstream).await;
            let _ = client.set_zero_linger();
            return Ok(());
        }
        Fault::Ok | Fault::LoseWrite => {}
        Fault::Throttle => {
            let turn = shared.turn.fetch_add(1, Ordering::Relaxed);
            return respond(&mut client, 400, &throttle_body(service, turn)).await;
        }
        Fault::Reset => {
            let _ = client.set_zero_linger();
            return Ok(());
        }
        Fault::Hang => {
            // Held, unanswered, until the client gives up or the fault is switched off.
            let mut changes = shared.faults.subscribe();
            let mut byte = [0u8; 1];
            loop {
                tokio::select! {
                    read = client.read(&mut byte) => {
                        if matches!(read, Ok(0) | Err(_)) {
                            return Ok(());
                        }
                    }
                    changed = changes.changed() => {
                        let still = changed.is_ok() && {
                            let now = changes.borrow();
                            match service {
                                Service::DynamoDb => now.dynamodb == Fault::Hang,
                                _ => now.sqs == Fault::Hang,
                            }
                        };
                        if !still {
                            let _ = client.set_zero_linger();
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
    let duplicate = service == Service::Sqs
        && (request.target.ends_with(".SendMessage")
            || request.target.ends_with(".SendMessageBatch"))
        && faults
            .duplicate_sends_to
            .as_deref()
            .is_some_and(|suffix| queue_url_ends_with(&request.raw[request.body_start..], suffix));
    if duplicate {
        shared.count("duplicated");
        // The copy first; its answer is dropped. The client gets the original's.
        let _ = forward(&request.raw, shared.upstream).await;
    }
    let response = forward(&request.raw, shared.upstream).await?;
    client.write_all(&response).await?;
    client.shutdown().await
}

fn queue_url_ends_with(body: &[u8], suffix: &str) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("QueueUrl")?.as_str().map(|u| u.ends_with(suffix)))
        .unwrap_or(false)
}

/// Sends `raw` upstream on a fresh connection and reads the whole answer (moto closes the
/// connection after it).
async fn forward(raw: &[u8], upstream: SocketAddr) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await?;
    conn.write_all(raw).await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        response.extend_from_slice(&chunk[..n]);
        if complete_response(&response) {
            break;
        }
    }
    Ok(response)
}

/// Whether `bytes` hold a whole response (head and `Content-Length` body).
fn complete_response(bytes: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(bytes) {
        Ok(httparse::Status::Complete(start)) => response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| {
                std::str::from_utf8(h.value)
                    .ok()?
                    .trim()
                    .parse::<usize>()
                    .ok()
            })
            .is_some_and(|len| bytes.len() >= start + len),
        _ => false,
    }
}

/// The real services' throttling answers.
fn throttle_body(service: Service, turn: u64) -> String {
    match service {
        Service::DynamoDb if turn % 2 == 0 => serde_json::json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded. Consider increasing your provisioning level with the UpdateTable API."
        }),
        Service::DynamoDb => serde_json::json!({
            "__type": "com.amazon.coral.availability#ThrottlingException",
            "message": "Rate of requests exceeds the allowed throughput."
        }),
        _ => serde_json::json!({
            "__type": "com.amazonaws.sqs#ThrottlingException",
            "message": "Rate exceeded"
        }),
    }
    .to_string()
}

async fn respond(client: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/x-amz-json-1.0\r\n\
         x-amzn-RequestId: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        uuid::Uuid::new_v4(),
        body.len()
    );
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

/// `POST /__fault?dynamodb=..&sqs=..&dup=..` switches; `GET /__fault` reports.
async fn control(mut client: TcpStream, request: &Request, shared: &Shared) -> std::io::Result<()> {
    let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut faults = shared.faults.borrow().clone();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let parsed = match key {
            "dynamodb" => value.parse().map(|f| faults.dynamodb = f),
            "sqs" => value.parse().map(|f| faults.sqs = f),
            "dup" => {
                faults.duplicate_sends_to = (!value.is_empty()).then(|| value.to_owned());
                Ok(())
            }
            other => Err(format!("unknown switch {other:?} (dynamodb, sqs, dup)")),
        };
        if let Err(reason) = parsed {
            return respond(
                &mut client,
                400,
                &serde_json::json!({ "error": reason }).to_string(),
            )
            .await;
        }
    }
    if !query.is_empty() {
        tracing::info!(?faults, "fault proxy: faults switched");
        shared.faults.send_replace(faults.clone());
    }
    let counts = shared.counts.lock().map(|c| c.clone()).unwrap_or_default();
    let body = serde_json::json!({ "faults": faults, "counts": counts }).to_string();
    respond(&mut client, 200, &body).await
}
