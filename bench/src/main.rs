//! `make bench`: cold start, first and warm invoke latency, peak memory and package size of
//! each function, each beside a floor measured in the same run on the same machine:
//! a hello-world function for init, the bare store call (one DynamoDB request) for latency.
//!
//! Each function's release binary runs as Lambda runs it, against a minimal Runtime API on
//! loopback, with API Gateway v2 events, on DynamoDB Local. Prints a table and writes JSON to
//! `bench/results/`. `BENCH_SPAWNS` (default 30) and `BENCH_INVOKES` (default 2000) size it.
//!
//! Then concurrency, as Lambda Managed Instances run a function: one process with
//! `AWS_LAMBDA_MAX_CONCURRENCY=8`, driven at 1 and at 8 invokes in flight
//! (`BENCH_CONCURRENT_INVOKES` each, default 800): throughput and p50/p99, beside the bare
//! store call at the same concurrency from this process (what DynamoDB Local on this
//! machine allows).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use payment_attempts::command::NewAttempt;
use payment_attempts::page::ListQuery;
use payment_attempts::time::Timestamp;
use payment_attempts::{AttemptId, AttemptStore, OrganizationId};
use payment_attempts_local::dynamodb_local::{self, DynamoDbLocal};
use payment_attempts_local::local_api::GatewayRequest;
use payment_attempts_local::runtime_api::RuntimeApi;
use payment_attempts_local::template::Template;
use payment_attempts_local::token;
use sections::{client_init_section, concurrency_section};
use serde_json::{json, Value};

mod sections;

type Error = Box<dyn std::error::Error + Send + Sync>;

const TABLE: &str = "bench";
const ORG: &str = "org_bench";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy)]
struct Percentiles {
    p50: Duration,
    p90: Duration,
    p99: Duration,
}

fn percentiles(mut samples: Vec<Duration>) -> Percentiles {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1];
    Percentiles { p50: at(0.50), p90: at(0.90), p99: at(0.99) }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// One function process under the Runtime API, as Lambda runs it.
struct Function {
    child: tokio::process::Child,
    api: RuntimeApi,
    init: Duration,
    invoked: u64,
    /// Run under callgrind: the counts written are those between `collect(true)` and
    /// `collect(false)`.
    profiled: bool,
}

impl Function {
    async fn start(binary: &Path, endpoint: &str) -> Result<Self, Error> {
        Self::start_with(binary, endpoint, 1, &[]).await
    }

    /// With `AWS_LAMBDA_MAX_CONCURRENCY` set to `concurrency`, and `extra` variables.
    async fn start_with(
        binary: &Path,
        endpoint: &str,
        concurrency: usize,
        extra: &[(&str, &str)],
    ) -> Result<Self, Error> {
        let api = RuntimeApi::start().await?;
        let name = binary.file_name().and_then(|n| n.to_str()).unwrap_or("function").to_owned();
        let spawned = Instant::now();
        // BENCH_CALLGRIND=<name>,... runs those functions under callgrind, which counts instructions
        // repeatably: where an invoke's CPU goes (BENCHMARKS.md).
        let profiled = std::env::var("BENCH_CALLGRIND").is_ok_and(|names| names.split(',').any(|n| n == name));
        let mut command = match profiled {
            true => {
                let mut valgrind = tokio::process::Command::new("valgrind");
                valgrind.arg("--tool=callgrind");
                valgrind.arg(format!("--callgrind-out-file=target/callgrind.{name}.%p.out"));
                valgrind.arg(binary);
                valgrind
            }
            false => tokio::process::Command::new(binary),
        };
        let child = command
            .env_clear()
            // Lambda sets PATH too (and valgrind needs it).
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "local")
            .env("AWS_SECRET_ACCESS_KEY", "local")
            .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
            .env("TABLE_NAME", TABLE)
            .env("RUST_LOG", "info")
            .env("AWS_LAMBDA_MAX_CONCURRENCY", concurrency.to_string())
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let asked = tokio::time::timeout(Duration::from_secs(30), api.wait_first_next()).await?;
        Ok(Function { child, api, init: asked.saturating_duration_since(spawned), invoked: 0, profiled })
    }

    /// Under callgrind, zeroes the counts, or writes them out.
    fn collect(&self, on: bool) -> Result<(), Error> {
        if let (true, Some(pid)) = (self.profiled, self.child.id()) {
            let command = if on { "--zero" } else { "--dump" };
            std::process::Command::new("callgrind_control").arg(command).arg(pid.to_string()).status()?;
        }
        Ok(())
    }

    async fn invoke(&mut self, event: &Bytes, status: u16) -> Result<Duration, Error> {
        self.invoked += 1;
        let started = Instant::now();
        let response = self.api.invoke(&format!("req-{}", self.invoked), event.clone()).await?;
        let took = started.elapsed();
        let response: Value = serde_json::from_slice(&response)?;
        if response["statusCode"] != json!(status) {
            return Err(format!("expected {status}, got {response}").into());
        }
        Ok(took)
    }

    /// CPU time the process's threads have run so far, in nanoseconds from each
    /// `/proc/<pid>/task/<tid>/schedstat` (clock ticks in `/proc/<pid>/stat` are too coarse
    /// for hello's 0.1 ms). The runtime's threads live through a warm run.
    fn cpu_time(&self) -> Option<Duration> {
        let mut nanos = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.child.id()?)).ok()? {
            let schedstat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
            nanos += schedstat.split_whitespace().next()?.parse::<u64>().ok()?;
        }
        Some(Duration::from_nanos(nanos))
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()?)).ok()?;
        status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse().ok()
    }
}

/// The zipped size of a binary shipped as `bootstrap`.
fn zipped_size(binary: &Path) -> Result<u64, Error> {
    let dir = std::env::temp_dir().join(format!("bench-zip-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(binary, dir.join("bootstrap"))?;
    let zip = dir.join("bootstrap.zip");
    let status = std::process::Command::new("python3")
        .args(["-c", "import sys, zipfile; zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED).write(sys.argv[2], 'bootstrap')"])
        .arg(&zip)
        .arg(dir.join("bootstrap"))
        .status()?;
    if !status.success() {
        return Err("zipping failed".into());
    }
    let size = std::fs::metadata(&zip)?.len();
    std::fs::remove_dir_all(&dir)?;
    Ok(size)
}

fn event(template: &Template, method: &str, path: &str, query: &str, body: Option<&Value>) -> Result<Bytes, Error> {
    let route = template
        .routes
        .iter()
        .find(|r| r.method == method && payment_attempts_local::template::match_path(&r.path, path).is_some())
        .ok_or("no route")?;
    let params = payment_attempts_local::template::match_path(&route.path, path).unwrap_or_default();
    let auth = format!("Bearer {}", token::unsigned(&json!({ "org_id": ORG })));
    let mut headers = vec![("authorization".to_owned(), auth)];
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    let request = GatewayRequest::from_loopback(method, &format!("{path}?{query}"), headers, body);
    Ok(Bytes::from(request.to_event(route, &params).to_string()))
}

fn attempt_body(i: usize) -> Value {
    json!({
        "session_id": "session_bench", "capability": "paid_search", "operation": "search.query",
        "rail": "mpp_tempo", "amount_usd": 0.014, "currency": "USD",
        "target_url": "https://api.example.com/v1/search", "receipt": {"tx": format!("0x{i:x}")}
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (spawns, invokes) = (env_or("BENCH_SPAWNS", 30), env_or("BENCH_INVOKES", 2000));
    if spawns == 0 || invokes == 0 {
        return Err("BENCH_SPAWNS and BENCH_INVOKES must be at least 1".into());
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let release = std::env::var("BENCH_BIN_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target/release"));
    let engine = tokio::task::spawn_blocking(DynamoDbLocal::start).await??;
    let endpoint = engine.endpoint();
    let client = dynamodb_local::client(&endpoint);
    let template = Template::load(&root.join("template.yaml"))?;
    template.create_table(&client, TABLE).await?;
    let store = AttemptStore::new(client, TABLE);
    let org = OrganizationId::parse(ORG).ok_or("org")?;
    let mut seeded: Vec<AttemptId> = Vec::new();
    for i in 0..60 {
        let attempt = NewAttempt::from_json(attempt_body(i).to_string().as_bytes())
            .map_err(|e| e.message)?
            .into_attempt(org.clone(), Timestamp::now());
        store.create(&attempt, None).await?;
        seeded.push(attempt.id);
    }
    let retrieve_id = seeded[seeded.len() / 2].clone();

    let hello_event = Bytes::from_static(b"{\"hello\": \"world\"}");
    // (what is measured, the function's binary, its event, the status it answers)
    let session_page = "limit=50&session_id=session_bench";
    let functions: Vec<(&str, &str, Bytes, u16)> = vec![
        ("hello", "hello", hello_event, 200),
        (
            "record-attempt",
            "record-attempt",
            event(&template, "POST", "/v1/payments/attempts", "", Some(&attempt_body(0)))?,
            201,
        ),
        (
            "retrieve",
            "retrieve",
            event(&template, "GET", &format!("/v1/payments/attempts/{retrieve_id}"), "", None)?,
            200,
        ),
        ("list", "list", event(&template, "GET", "/v1/payments/attempts", "limit=50", None)?, 200),
        ("list-session", "list", event(&template, "GET", "/v1/payments/attempts", session_page, None)?, 200),
    ];

    // Floors: the store call each handler makes, from this process, on the same client config,
    // after a warm-up so the engine's first requests count against neither side.
    let page = ListQuery { limit: 50, ..ListQuery::default() };
    let session = payment_attempts::id::SessionId::parse("session_bench").ok_or("session")?;
    let session_page = ListQuery { session_id: Some(session), ..page.clone() };
    for i in 0..200 {
        let attempt = NewAttempt::from_json(attempt_body(i).to_string().as_bytes())
            .map_err(|e| e.message)?
            .into_attempt(org.clone(), Timestamp::now());
        store.create(&attempt, None).await?;
        store.get(&org, &retrieve_id).await?;
        store.list(&org, &page).await?;
    }
    let mut floors = std::collections::HashMap::new();
    let mut samples = Vec::with_capacity(invokes);
    for i in 0..invokes {
        let attempt = NewAttempt::from_json(attempt_body(i).to_string().as_bytes())
            .map_err(|e| e.message)?
            .into_attempt(org.clone(), Timestamp::now());
        let started = Instant::now();
        store.create(&attempt, None).await?;
        samples.push(started.elapsed());
    }
    floors.insert("record-attempt", percentiles(std::mem::take(&mut samples)));
    for _ in 0..invokes {
        let started = Instant::now();
        store.get(&org, &retrieve_id).await?.ok_or("seeded attempt missing")?;
        samples.push(started.elapsed());
    }
    floors.insert("retrieve", percentiles(std::mem::take(&mut samples)));
    for _ in 0..invokes {
        let started = Instant::now();
        store.list(&org, &page).await?;
        samples.push(started.elapsed());
    }
    floors.insert("list", percentiles(std::mem::take(&mut samples)));
    for _ in 0..invokes {
        let started = Instant::now();
        store.list(&org, &session_page).await?;
        samples.push(started.elapsed());
    }
    floors.insert("list-session", percentiles(std::mem::take(&mut samples)));

    // Cold starts, interleaved (hello, record, retrieve, list, hello, ...) so that the machine's
    // drift touches every function alike: each spawn is an init, then the first invoke.
    // Straight after `cargo build`, the disk is still taking the binaries and the first spawns
    // are slower (first ÷ warm 2.1-2.4 against 1.3-1.5 on a rerun): flush, and discard three
    // rounds.
    std::process::Command::new("sync").status()?;
    let discarded = 3;
    let mut cold = vec![(Vec::with_capacity(spawns), Vec::with_capacity(spawns)); functions.len()];
    for round in 0..spawns + discarded {
        for ((_, binary, event, status), (inits, firsts)) in functions.iter().zip(cold.iter_mut()) {
            let mut function = Function::start(&release.join(binary), &endpoint).await?;
            let first = function.invoke(event, *status).await?;
            if round >= discarded {
                inits.push(function.init);
                firsts.push(first);
            }
            // Reaped, and the engine settled, before the next spawn: on 2 cores either would
            // otherwise land on the next function's init.
            function.child.kill().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut results = Vec::new();
    for ((name, binary, event, status), (inits, firsts)) in functions.iter().zip(cold) {
        let binary = release.join(binary);
        let (init, first) = (percentiles(inits), percentiles(firsts));
        let mut function = Function::start(&binary, &endpoint).await?;
        function.invoke(event, *status).await?;
        let mut warm = Vec::with_capacity(invokes);
        let cpu_before = function.cpu_time();
        function.collect(true)?;
        for _ in 0..invokes {
            warm.push(function.invoke(event, *status).await?);
        }
        function.collect(false)?;
        // The function's own CPU per invoke, which DynamoDB Local's latency does not blur; on
        // a 128 MB Lambda, CPU is a fraction of a core, so this is what stretches latency.
        let cpu_us = match (cpu_before, function.cpu_time()) {
            (Some(before), Some(after)) => (after - before).as_secs_f64() * 1e6 / invokes as f64,
            _ => f64::NAN,
        };
        let warm = percentiles(warm);
        let rss = function.peak_rss_kib().unwrap_or(0);
        let zip = zipped_size(&binary)?;
        results.push(json!({
            "function": name,
            "init_ms": {"p50": ms(init.p50), "p90": ms(init.p90)},
            "first_invoke_ms": {"p50": ms(first.p50), "p90": ms(first.p90)},
            "warm_ms": {"p50": ms(warm.p50), "p90": ms(warm.p90), "p99": ms(warm.p99)},
            "floor_ms": floors.get(name).map(|f| json!({"p50": ms(f.p50), "p90": ms(f.p90), "p99": ms(f.p99)})),
            "cpu_us_per_warm_invoke": cpu_us,
            "peak_rss_mib": rss as f64 / 1024.0,
            "zip_bytes": zip,
        }));
    }

    let hello_init = results[0]["init_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    // Hello's warm invoke is the Runtime API's own round trip, which no handler can avoid and
    // the bare store call does not pay: the "net" ratio takes it out.
    let transport = results[0]["warm_ms"]["p50"].as_f64().unwrap_or(f64::NAN);
    println!(
        "bench: {spawns} spawns and {invokes} warm invokes per function, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<16} {:>9} {:>7} {:>9} {:>9} {:>7} {:>7} {:>9} {:>7} {:>9} {:>7} {:>7} {:>8} {:>9}",
        "function",
        "init p50",
        "x floor",
        "first p50",
        "warm p50",
        "x floor",
        "x net",
        "warm p99",
        "x floor",
        "floor p50",
        "1st/p50",
        "CPU us",
        "RSS MiB",
        "zip KiB"
    );
    for r in &mut results {
        let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
        let init = f(&r["init_ms"]["p50"]);
        let (warm50, warm99, first) =
            (f(&r["warm_ms"]["p50"]), f(&r["warm_ms"]["p99"]), f(&r["first_invoke_ms"]["p50"]));
        let (floor50, floor99) = (f(&r["floor_ms"]["p50"]), f(&r["floor_ms"]["p99"]));
        r["ratios"] = json!({
            "init_vs_hello": init / hello_init,
            "first_p50_vs_warm_p50": first / warm50,
            "warm_p50_vs_floor": warm50 / floor50,
            "warm_p50_net_of_runtime_api_vs_floor": (warm50 - transport) / floor50,
            "warm_p99_vs_floor": warm99 / floor99,
        });
        println!(
            "{:<16} {:>9.2} {:>7.2} {:>9.2} {:>9.3} {:>7.2} {:>7.2} {:>9.3} {:>7.2} {:>9.3} {:>7.2} {:>7.0} {:>8.1} {:>9.0}",
            r["function"].as_str().unwrap_or(""),
            init,
            init / hello_init,
            first,
            warm50,
            warm50 / floor50,
            (warm50 - transport) / floor50,
            warm99,
            warm99 / floor99,
            floor50,
            first / warm50,
            f(&r["cpu_us_per_warm_invoke"]),
            f(&r["peak_rss_mib"]),
            f(&r["zip_bytes"]) / 1024.0
        );
    }
    let client_init = client_init_section(&release, &endpoint, spawns, &functions[0].2).await?;
    // The concurrency section runs each function's binary once, on its first event.
    let concurrent: Vec<(&str, Bytes, u16)> =
        functions[1..4].iter().map(|(name, _, event, status)| (*name, event.clone(), *status)).collect();
    let concurrency = concurrency_section(&concurrent, &release, &endpoint, &store, &org, &retrieve_id).await?;
    let out = root.join("bench/results");
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("{}.json", Timestamp::now().to_string().replace(':', "-")));
    let report = json!({"spawns": spawns, "invokes": invokes, "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()), "functions": results, "client_init": client_init, "concurrency": concurrency});
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", file.display());
    drop(engine);
    Ok(())
}
