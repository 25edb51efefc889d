//! An EventBridge emulator on loopback, for local runs and tests: moto's server (from PyPI;
//! `scripts/setup` installs it in `target/moto-venv`, `scripts/eventbridge-emulator` starts
//! it) on a free port, in memory. Here the
//! template's bus and archive are created, and subscriptions: an SQS queue behind a rule,
//! which is how a consumer would see the events, read by tests and by `make dev`'s tail.

use std::io;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::config::{Credentials, Region};
use aws_sdk_eventbridge::types::Target;
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use serde_json::Value;

use crate::dynamodb_local::{free_port, wait_listening};
use crate::template::EventsSpec;

type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running emulator. It stops when this is dropped, and when this process dies: its shell
/// wrapper stops it as soon as our end of its stdin closes.
pub struct EventBridgeLocal {
    wrapper: Child,
    stdin: Option<ChildStdin>,
    port: u16,
}

impl EventBridgeLocal {
    /// The Python with moto: `MOTO_PYTHON`, or the venv `scripts/setup` makes.
    pub fn python() -> io::Result<PathBuf> {
        let path = std::env::var_os("MOTO_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python"));
        if path.exists() {
            Ok(path)
        } else {
            let message = format!("{} not found: run `make setup` (or set MOTO_PYTHON)", path.display());
            Err(io::Error::new(io::ErrorKind::NotFound, message))
        }
    }

    /// Starts the emulator on a free port and waits until it accepts connections.
    pub fn start() -> io::Result<Self> {
        let (python, port) = (Self::python()?, free_port()?);
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/eventbridge-emulator");
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(
                r#"python="$1"; script="$2"; port="$3"
                   "$python" "$script" -H 127.0.0.1 -p "$port" >/dev/null 2>&1 &
                   moto=$!; read line; kill $moto; wait $moto"#,
            )
            .arg("eventbridge-local")
            .arg(&python)
            .arg(&script)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let stdin = wrapper.stdin.take();
        let mut emulator = EventBridgeLocal { wrapper, stdin, port };
        // On an error, dropping the emulator stops it.
        wait_listening(&mut emulator.wrapper, port, Duration::from_secs(30), "the EventBridge emulator")?;
        Ok(emulator)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let _ = self.wrapper.wait();
    }
}

impl Drop for EventBridgeLocal {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An EventBridge client for a local endpoint, on the functions' HTTP client, retries and
/// timeouts, with dummy credentials.
pub fn client(endpoint: &str) -> aws_sdk_eventbridge::Client {
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(aws_sdk_eventbridge::config::BehaviorVersion::latest())
        .http_client(payment_attempts::runtime::http_client())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "eventbridge-local"))
        .build();
    aws_sdk_eventbridge::Client::from_conf(config)
}

fn sqs_client(endpoint: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .http_client(payment_attempts::runtime::http_client())
        .endpoint_url(endpoint)
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new("local", "local", None, None, "sqs-local"))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// Creates the bus `name`, and its archive as the template declares it.
pub async fn create_bus(endpoint: &str, spec: &EventsSpec, name: &str) -> Result<(), Error> {
    let events = client(endpoint);
    if events.describe_event_bus().name(name).send().await.is_ok() {
        return Ok(());
    }
    let bus = match events.create_event_bus().name(name).send().await {
        Ok(bus) => bus,
        // Another server sharing the emulator created it meanwhile, with its archive.
        Err(_) if events.describe_event_bus().name(name).send().await.is_ok() => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let arn = bus.event_bus_arn().ok_or("the emulator gave the bus no ARN")?;
    events
        .create_archive()
        .archive_name(format!("{name}-archive"))
        .event_source_arn(arn)
        .retention_days(spec.archive_retention_days)
        .event_pattern(source_pattern(spec))
        .send()
        .await?;
    Ok(())
}

fn source_pattern(spec: &EventsSpec) -> String {
    serde_json::json!({"source": [spec.source]}).to_string()
}

/// A queue subscribed to every event of the bus through a rule, and a consumer reading it as
/// events arrive (moto's queue slows down with every message it holds, so it is kept short).
pub struct Subscription {
    queue: Arc<Queue>,
    reader: tokio::task::JoinHandle<()>,
}

struct Queue {
    sqs: aws_sdk_sqs::Client,
    url: String,
    /// Every delivery read so far, in arrival order; held while reading, so that reads are
    /// appended in the order they were taken.
    delivered: tokio::sync::Mutex<Vec<Delivered>>,
}

impl Subscription {
    /// Subscribes a new queue named `name` to the bus `bus`, and starts reading it.
    pub async fn create(endpoint: &str, spec: &EventsSpec, bus: &str, name: &str) -> Result<Self, Error> {
        let sqs = sqs_client(endpoint);
        let url = sqs.create_queue().queue_name(name).send().await?.queue_url.ok_or("no queue URL")?;
        let arn_name = aws_sdk_sqs::types::QueueAttributeName::QueueArn;
        let attributes = sqs.get_queue_attributes().queue_url(&url).attribute_names(arn_name.clone()).send().await?;
        let queue_arn = attributes.attributes().and_then(|a| a.get(&arn_name)).ok_or("no queue ARN")?.clone();
        let events = client(endpoint);
        events.put_rule().name(name).event_bus_name(bus).event_pattern(source_pattern(spec)).send().await?;
        let target = Target::builder().id("queue").arn(queue_arn).build()?;
        events.put_targets().rule(name).event_bus_name(bus).targets(target).send().await?;
        let queue = Arc::new(Queue { sqs, url, delivered: Default::default() });
        let reading = queue.clone();
        let reader = tokio::spawn(async move {
            loop {
                let mut delivered = reading.delivered.lock().await;
                let read = reading.read_once(&mut delivered).await;
                drop(delivered);
                if !matches!(read, Ok(n) if n > 0) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        });
        Ok(Subscription { queue, reader })
    }

    /// Every event delivered so far, duplicates included, in arrival order.
    pub async fn delivered(&self) -> Result<Vec<Delivered>, Error> {
        let mut delivered = self.queue.delivered.lock().await;
        while self.queue.read_once(&mut delivered).await? > 0 {}
        Ok(delivered.clone())
    }

    /// The deliveries from the `from`th on, once they are read.
    pub async fn delivered_since(&self, from: usize) -> Result<Vec<Delivered>, Error> {
        Ok(self.delivered().await?.split_off(from))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Queue {
    /// One receive of up to 10 messages, appended to `delivered` and deleted: how many.
    async fn read_once(&self, delivered: &mut Vec<Delivered>) -> Result<usize, Error> {
        let sent = aws_sdk_sqs::types::MessageSystemAttributeName::SentTimestamp;
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .message_system_attribute_names(sent.clone())
            .send()
            .await?;
        let mut deletes = Vec::new();
        for (i, message) in out.messages().iter().enumerate() {
            let at_ms = message.attributes().and_then(|a| a.get(&sent)).and_then(|ms| ms.parse().ok());
            let event = serde_json::from_str(message.body().unwrap_or_default())?;
            delivered.push(Delivered { event, at_ms: at_ms.unwrap_or_default() });
            let receipt = message.receipt_handle().unwrap_or_default();
            deletes.push(DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(receipt).build()?);
        }
        let read = deletes.len();
        if read > 0 {
            self.sqs.delete_message_batch().queue_url(&self.url).set_entries(Some(deletes)).send().await?;
        }
        Ok(read)
    }
}

/// An event as the subscribed queue received it.
#[derive(Debug, Clone)]
pub struct Delivered {
    pub event: Value,
    /// When the emulator delivered it to the queue (Unix milliseconds).
    pub at_ms: u64,
}
