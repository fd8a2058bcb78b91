//! What tests of the host and of the components share: the local services' settings, a
//! one-time build of the wasm components, and [`TestServer`], which serves a manifest
//! through `edge` on an ephemeral loopback port and stops cleanly.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use edge::engine::{self, EngineSettings};
use edge::instance::ReuseSettings;
use edge::loader::{self, Shared};
use edge::metrics::Metrics;
use edge::mysql::{MysqlPools, MysqlSettings};
use edge::outbound_http::HttpClient;
use edge::redis::{RedisPools, RedisSettings};
use edge::server::{self, ServerSettings};
use http_body_util::{BodyExt, Full};
use mysql_async::prelude::Queryable;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// REDIS_URL, MYSQL_URL and KAFKA_BROKERS from the environment, else from `.state/env`.
pub fn service_env() -> HashMap<String, String> {
    let mut env: HashMap<String, String> = std::fs::read_to_string(repo_root().join(".state/env"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    for key in ["REDIS_URL", "MYSQL_URL", "KAFKA_BROKERS"] {
        if let Ok(value) = std::env::var(key) {
            env.insert(key.to_owned(), value);
        }
    }
    assert!(
        env.contains_key("REDIS_URL") && env.contains_key("MYSQL_URL"),
        "start the local services first: infra/local/up"
    );
    env
}

/// The URL of `database` on the local MySQL server of `service_env`.
pub fn database_url(database: &str) -> String {
    let base = &service_env()["MYSQL_URL"];
    let server = base.rsplit_once('/').expect("a database in MYSQL_URL").0;
    format!("{server}/{database}")
}

/// Brings the database at `mysql_url` to the current schema with `infra/mysql/migrate`.
pub fn migrate(mysql_url: &str) {
    let migrated = Command::new(repo_root().join("infra/mysql/migrate"))
        .env("MYSQL_URL", mysql_url)
        .output()
        .expect("running infra/mysql/migrate");
    assert!(
        migrated.status.success(),
        "migrating {mysql_url}: {migrated:?}"
    );
}

/// A test's own database, dropped and migrated afresh, so a run starts from what the
/// migrations make and nothing an earlier run left: its URL.
pub async fn scratch_database(database: &str) -> String {
    let admin = mysql_async::Pool::new(service_env()["MYSQL_URL"].as_str());
    admin
        .get_conn()
        .await
        .expect("connecting to MySQL")
        .query_drop(format!("DROP DATABASE IF EXISTS `{database}`"))
        .await
        .expect("dropping the scratch database");
    admin.disconnect().await.ok();
    let url = database_url(database);
    migrate(&url);
    url
}

/// Builds a wasm workspace with cargo (release, wasm32-wasip2), once per test binary.
/// `target_dir` is relative to the repository; `None` keeps the workspace's own.
pub fn build_wasm(manifest: &str, target_dir: Option<&str>) {
    static BUILT: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if built.iter().any(|m| m == manifest) {
        return;
    }
    let root = repo_root();
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(root.join(manifest));
    if let Some(dir) = target_dir {
        command.arg("--target-dir").arg(root.join(dir));
    }
    let status = command.status().expect("running cargo to build components");
    assert!(status.success(), "building {manifest} failed");
    built.push(manifest.to_owned());
}

/// The host's probe application (`host/tests/fixtures/probe.toml`, component built from
/// `host/tests/probe`) on the MySQL database at `mysql_url`: its manifest and variables.
pub fn probe_application(mysql_url: String) -> (PathBuf, Vec<(&'static str, String)>) {
    build_wasm(
        "host/tests/probe/Cargo.toml",
        Some("target/test-components"),
    );
    let variables = vec![
        (
            "SPIN_VARIABLE_REDIS_URL",
            service_env()["REDIS_URL"].clone(),
        ),
        ("SPIN_VARIABLE_MYSQL_HOST", mysql_host(&mysql_url)),
        ("SPIN_VARIABLE_MYSQL_URL", mysql_url),
        ("SPIN_VARIABLE_API_KEY", "s3cret".to_owned()),
    ];
    (
        repo_root().join("host/tests/fixtures/probe.toml"),
        variables,
    )
}

/// `mysql://host:port` of a MySQL URL, the form allowed_outbound_hosts takes.
pub fn mysql_host(mysql_url: &str) -> String {
    let after_at = mysql_url
        .rsplit_once('@')
        .expect("credentials in MYSQL_URL")
        .1;
    format!("mysql://{}", after_at.split('/').next().unwrap_or_default())
}

/// A response: status, headers and body text.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Response {
    /// The body as JSON; panics with the body when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("status {}: {e}: {}", self.status, self.body))
    }
}

/// Sends one request to `addr` on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Response {
    let stream = TcpStream::connect(addr).await.expect("connecting");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", format!("localhost:{}", addr.port()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body)).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A `spin` binary to run the tests under real Spin instead of `edge`, from `SPIN`.
pub fn spin_binary() -> Option<PathBuf> {
    std::env::var_os("SPIN")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
}

/// The `spin up` flags of the README's command (also in `infra/local/app`): one request at
/// a time per instance, and the runtime configuration that caps Spin's MySQL connections,
/// safe only with one request per instance. The components are correct under Spin's
/// defaults too (`SPIN_DEFAULTS=1` below).
pub fn recommended_spin_up_flags() -> [std::ffi::OsString; 4] {
    [
        "--max-instance-concurrent-reuse-count".into(),
        "1".into(),
        "--runtime-config-file".into(),
        repo_root().join("infra/spin/runtime-config.toml").into(),
    ]
}

/// An application served by a real `spin up` on 127.0.0.1, for the conformance run: the
/// requests a test sends `edge` go to Spin itself. The process is killed when this drops;
/// its output stays in `target/spin-e2e/<port>/`.
#[derive(Debug)]
pub struct SpinServer {
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl SpinServer {
    /// Runs `spin up --from manifest` with `variables` in its environment, the
    /// [`recommended_spin_up_flags`] (Spin's own defaults instead when the environment sets
    /// `SPIN_DEFAULTS=1`, as SpinKube's shim runs it) and any more flags the environment's
    /// `SPIN_UP_FLAGS` names, space-separated; once it accepts connections.
    pub async fn serve(spin: &Path, manifest: &Path, variables: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let dir = repo_root().join(format!("target/spin-e2e/{port}"));
        std::fs::create_dir_all(&dir).expect("a log folder");
        let output = std::fs::File::create(dir.join("spin.out")).expect("a log file");
        let flags = std::env::var("SPIN_UP_FLAGS").unwrap_or_default();
        // A group of its own: `spin up` runs the trigger as a child process, and both go
        // when the group is signalled.
        let child = Command::new(spin)
            .process_group(0)
            .arg("up")
            .arg("--from")
            .arg(manifest)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--log-dir")
            .arg(&dir)
            .args(
                (std::env::var("SPIN_DEFAULTS").as_deref() != Ok("1"))
                    .then(recommended_spin_up_flags)
                    .into_iter()
                    .flatten(),
            )
            .args(flags.split_whitespace())
            .envs(variables.iter().map(|(name, value)| (*name, value)))
            .stdout(output.try_clone().expect("a log file"))
            .stderr(output)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", spin.display()));
        // Killed with its trigger if it never listens: the panic drops it.
        let mut server = Self { addr, child };
        for _ in 0..1200 {
            if TcpStream::connect(addr).await.is_ok() {
                return server;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(dir.join("spin.out")).unwrap_or_default();
                panic!("spin up exited with {status}:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "spin up did not listen on {addr} within 120 s; see {}",
            dir.display()
        );
    }
}

impl Drop for SpinServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--"])
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.wait();
    }
}

/// An application served by `edge` on 127.0.0.1 with an ephemeral port.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    /// Serves `manifest` with `variables` as the process environment would give them.
    pub async fn serve(
        manifest: &Path,
        variables: &[(&str, String)],
        reuse: ReuseSettings,
        settings: ServerSettings,
        mysql: MysqlSettings,
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("info")
            .try_init();
        let variables: HashMap<String, String> = variables
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let engine = engine::build(&EngineSettings {
            cache_dir: Some(repo_root().join("target/test-components/cache")),
            max_instances: 200,
            max_instance_memory: 64 << 20,
            perf_map: false,
        })
        .expect("engine");
        engine::spawn_epoch_ticker(&engine).expect("epoch ticker");
        let metrics = Arc::new(Metrics::default());
        let shared = Shared {
            engine,
            redis: Arc::new(RedisPools::new(
                RedisSettings::default(),
                metrics.redis_connections.clone(),
            )),
            mysql: Arc::new(MysqlPools::new(mysql)),
            http: HttpClient::default(),
            metrics: metrics.clone(),
            reuse,
            max_instance_memory: 64 << 20,
        };
        let app = loader::load(manifest, |name| variables.get(name).cloned(), shared)
            .expect("loading the application");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, Arc::new(app), settings, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// Sends one request on a fresh connection.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Response {
        send(self.addr, method, path, body, headers).await
    }

    pub async fn request(&self, method: &str, path: &str, body: Bytes) -> (u16, String) {
        self.request_with(method, path, body, &[]).await
    }

    pub async fn request_with(
        &self,
        method: &str,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> (u16, String) {
        let response = self.send(method, path, body, headers).await;
        (response.status, response.body)
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        self.request("GET", path, Bytes::new()).await
    }

    /// GETs `path`, expecting a 200 with a JSON body.
    pub async fn get_json(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// The sum of a metric's samples in the Prometheus exposition.
    pub fn metric(&self, name: &str) -> f64 {
        self.metrics
            .encode()
            .lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// What `serve` returned, for a server that ends on its own (it refused to start).
    pub async fn ended(self) -> anyhow::Result<()> {
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("the server ended")
            .expect("the server task did not panic")
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), &mut self.task).await;
    }
}
