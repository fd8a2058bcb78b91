//! The ceiling `host/bench/run` judges the edge host against: a native hyper server doing
//! exactly the work of the app's components on the benchmark's routes, with no WebAssembly
//! in between.
//!
//! - `GET /hello`: the probe component's answer without I/O.
//! - `POST /api/queue/tokens` `{userId, queueId?}`: the queue component's join, through
//!   `waiting-room-script` (the same script, keys and arguments, `EVALSHA`) and the same
//!   signed queue ticket.
//! - `GET /mysql/count?label=`: the probe component's one-row MySQL read.
//!
//! Failures answer 503 with the error's text: it is a measuring tool, not a service.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mysql_async::prelude::Queryable;
use ticketing_core::limits::RateLimit;
use ticketing_core::pass::{Claims, PassKey};
use ticketing_core::queue::{AdmissionPolicy, JoinReply, JoinRequest, Position};
use ticketing_core::time::Timestamp;
use tokio::net::TcpListener;
use waiting_room_script::{AbuseLimits, Caller, SCRIPT, ScriptCall};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The settings of the app under test, so both sides do the same work; the defaults are
/// `spin.toml`'s.
#[derive(Parser, Debug)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:3400")]
    listen: SocketAddr,
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    #[arg(long, env = "MYSQL_URL")]
    mysql_url: String,
    #[arg(long, env = "PASS_SIGNING_KEY")]
    pass_signing_key: String,
    #[arg(long, default_value_t = 50)]
    queue_rate_per_sec: u32,
    #[arg(long, default_value_t = 500)]
    queue_max_active: u32,
    #[arg(long, default_value_t = 600)]
    queue_pass_ttl_seconds: u64,
    #[arg(long, default_value_t = 120)]
    queue_idle_timeout_seconds: u64,
    #[arg(long, default_value_t = 10)]
    queue_limit_window_seconds: u64,
    #[arg(long, default_value_t = 10)]
    queue_join_limit_per_user: u32,
    #[arg(long, default_value_t = 1000)]
    queue_join_limit_per_address: u32,
}

struct Server {
    redis: redis::aio::ConnectionManager,
    script: redis::Script,
    mysql: mysql_async::Pool,
    pass_key: PassKey,
    policy: AdmissionPolicy,
    join_limits: AbuseLimits,
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

impl Server {
    async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> anyhow::Result<Response<Full<Bytes>>> {
        match (request.method(), request.uri().path()) {
            (&Method::GET, "/hello") => Ok(reply(StatusCode::OK, "\"hello\"".to_owned())),
            (&Method::POST, "/api/queue/tokens") => {
                let body = request.into_body().collect().await?.to_bytes();
                let join: JoinRequest = serde_json::from_slice(&body)?;
                self.join(join, peer).await
            }
            (&Method::GET, "/mysql/count") => {
                let label = request
                    .uri()
                    .query()
                    .and_then(|q| q.strip_prefix("label="))
                    .unwrap_or_default()
                    .to_owned();
                self.count(label).await
            }
            _ => Ok(reply(StatusCode::NOT_FOUND, "null".to_owned())),
        }
    }

    async fn join(
        &self,
        join: JoinRequest,
        peer: SocketAddr,
    ) -> anyhow::Result<Response<Full<Bytes>>> {
        let address = peer.ip().to_string();
        let caller = Caller {
            user_id: join.user_id,
            address: Some(&address),
        };
        let now = Timestamp::from_system_time(SystemTime::now());
        let call = ScriptCall::join(
            &join.queue_id,
            &caller,
            &self.join_limits,
            &self.policy,
            now,
        );
        let mut invocation = self.script.prepare_invoke();
        invocation.key(&call.keys).arg(&call.args);
        let (outcome, position, joined_at): (String, u64, u64) =
            invocation.invoke_async(&mut self.redis.clone()).await?;
        let status = match outcome.as_str() {
            "JOINED" => StatusCode::CREATED,
            "EXISTING" => StatusCode::OK,
            other => anyhow::bail!("the script answered {other}"),
        };
        let position = Position::new(position).context("position 0")?;
        let joined_at = Timestamp::from_unix_millis(joined_at);
        let ticket = Claims::queue_ticket(join.queue_id.clone(), join.user_id, position, joined_at);
        let body = serde_json::to_string(&JoinReply {
            token: self.pass_key.sign(&ticket),
            queue_id: join.queue_id,
            user_id: join.user_id,
            position: position.get(),
            joined_at,
            token_expires_at: ticket.expires_at,
        })?;
        Ok(reply(status, body))
    }

    async fn count(&self, label: String) -> anyhow::Result<Response<Full<Bytes>>> {
        let mut connection = self.mysql.get_conn().await?;
        let n: Option<i64> = connection
            .exec_first(
                "SELECT COUNT(*) AS n FROM edge_probe WHERE label = ?",
                (label,),
            )
            .await?;
        Ok(reply(StatusCode::OK, serde_json::to_string(&n)?))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let window = Duration::from_secs(args.queue_limit_window_seconds);
    let server = Arc::new(Server {
        redis: redis::Client::open(args.redis_url.as_str())?
            .get_connection_manager()
            .await?,
        script: redis::Script::new(SCRIPT),
        mysql: mysql_async::Pool::new(mysql_async::Opts::from_url(&args.mysql_url)?),
        pass_key: PassKey::new(args.pass_signing_key.as_bytes())?,
        policy: AdmissionPolicy::new(
            args.queue_rate_per_sec,
            args.queue_max_active,
            Duration::from_secs(args.queue_pass_ttl_seconds),
            Duration::from_secs(args.queue_idle_timeout_seconds),
        )?,
        join_limits: AbuseLimits {
            per_user: RateLimit::new(args.queue_join_limit_per_user, window)?,
            per_address: RateLimit::new(args.queue_join_limit_per_address, window)?,
        },
    });
    let listener = TcpListener::bind(args.listen).await?;
    println!("bench-native on http://{}", listener.local_addr()?);
    loop {
        let (stream, peer) = listener.accept().await?;
        // As edge does: replies leave at once instead of waiting for Nagle's timer.
        stream.set_nodelay(true)?;
        let server = server.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let server = server.clone();
                async move {
                    let response = match server.handle(request, peer).await {
                        Ok(response) => response,
                        Err(error) => reply(
                            StatusCode::SERVICE_UNAVAILABLE,
                            serde_json::json!({ "error": format!("{error:#}") }).to_string(),
                        ),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
