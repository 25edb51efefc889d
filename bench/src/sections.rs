//! The bench's sections beyond cold starts and warm latency: the client's init built each
//! way, and each function at 1 and 8 invokes in flight in one process.

use std::path::Path;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use payment_attempts::command::NewAttempt;
use payment_attempts::page::ListQuery;
use payment_attempts::time::Timestamp;
use payment_attempts::{AttemptId, AttemptStore, OrganizationId};
use serde_json::{json, Value};

use crate::{attempt_body, env_or, ms, percentiles, Error, Function};

/// Runs `calls` of `call` with `in_flight` at a time: (wall time, latencies).
async fn drive<F, Fut>(calls: usize, in_flight: usize, call: F) -> Result<(Duration, Vec<Duration>), Error>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<(), Error>>,
{
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    let lanes = (0..in_flight).map(|_| async {
        let mut took = Vec::new();
        loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if i >= calls {
                return Ok::<_, Error>(took);
            }
            let began = Instant::now();
            call(i).await?;
            took.push(began.elapsed());
        }
    });
    let mut latencies = Vec::with_capacity(calls);
    for lane in futures_util::future::join_all(lanes).await {
        latencies.extend(lane?);
    }
    Ok((started.elapsed(), latencies))
}

/// Each function in one process at concurrency 8, driven with 1 and with 8 invokes in flight,
/// beside the bare store call driven the same way.
pub async fn concurrency_section(
    functions: &[(&str, Bytes, u16)],
    release: &Path,
    endpoint: &str,
    store: &AttemptStore,
    org: &OrganizationId,
    retrieve_id: &AttemptId,
) -> Result<Vec<Value>, Error> {
    const IN_FLIGHT: usize = 8;
    let calls = env_or("BENCH_CONCURRENT_INVOKES", 800);
    let page = ListQuery { limit: 50, ..ListQuery::default() };
    let summarize = |(wall, latencies): (Duration, Vec<Duration>)| {
        let p = percentiles(latencies);
        json!({"per_second": calls as f64 / wall.as_secs_f64(), "p50_ms": ms(p.p50), "p99_ms": ms(p.p99)})
    };
    println!(
        "concurrency: one process, AWS_LAMBDA_MAX_CONCURRENCY={IN_FLIGHT}, {calls} invokes at 1 and at {IN_FLIGHT} in flight"
    );
    println!(
        "{:<16} {:>9} {:>9} {:>7} {:>8} {:>8} {:>8} {:>8} {:>7} {:>11} {:>11} {:>7}",
        "function",
        "1: /s",
        "8: /s",
        "x",
        "1: p50",
        "8: p50",
        "1: p99",
        "8: p99",
        "p99 x",
        "floor 1: /s",
        "floor 8: /s",
        "x"
    );
    let mut rows = Vec::new();
    for (name, event, status) in functions {
        let function = Function::start_with(&release.join(name), endpoint, IN_FLIGHT, &[]).await?;
        let invoke = |tag: &'static str| {
            let function = &function;
            move |i: usize| async move {
                let response = function.api.invoke(&format!("{tag}-{i}"), event.clone()).await?;
                let response: Value = serde_json::from_slice(&response)?;
                if response["statusCode"] != json!(*status) {
                    return Err(format!("expected {status}, got {response}").into());
                }
                Ok(())
            }
        };
        drive(100, IN_FLIGHT, invoke("warm")).await?;
        let one = summarize(drive(calls, 1, invoke("one")).await?);
        let eight = summarize(drive(calls, IN_FLIGHT, invoke("eight")).await?);
        let page = &page;
        let floor_call = |i: usize| async move {
            match *name {
                "record-attempt" => {
                    let attempt = NewAttempt::from_json(attempt_body(i).to_string().as_bytes())
                        .map_err(|e| e.message)?
                        .into_attempt(org.clone(), Timestamp::now());
                    store.create(&attempt, None).await?;
                }
                "retrieve" => {
                    store.get(org, retrieve_id).await?.ok_or("seeded attempt missing")?;
                }
                _ => {
                    store.list(org, page).await?;
                }
            }
            Ok(())
        };
        let floor_one = summarize(drive(calls, 1, floor_call).await?);
        let floor_eight = summarize(drive(calls, IN_FLIGHT, floor_call).await?);
        let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let row = json!({
            "function": name,
            "in_flight_1": one, "in_flight_8": eight,
            "floor_in_flight_1": floor_one, "floor_in_flight_8": floor_eight,
            "ratios": {
                "throughput_8_vs_1": f(&eight, "per_second") / f(&one, "per_second"),
                "p99_8_vs_1": f(&eight, "p99_ms") / f(&one, "p99_ms"),
                "floor_throughput_8_vs_1": f(&floor_eight, "per_second") / f(&floor_one, "per_second"),
            },
        });
        println!(
            "{:<16} {:>9.0} {:>9.0} {:>7.2} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>7.2} {:>11.0} {:>11.0} {:>7.2}",
            name,
            f(&one, "per_second"),
            f(&eight, "per_second"),
            f(&row["ratios"], "throughput_8_vs_1"),
            f(&one, "p50_ms"),
            f(&eight, "p50_ms"),
            f(&one, "p99_ms"),
            f(&eight, "p99_ms"),
            f(&row["ratios"], "p99_8_vs_1"),
            f(&floor_one, "per_second"),
            f(&floor_eight, "per_second"),
            f(&row["ratios"], "floor_throughput_8_vs_1"),
        );
        rows.push(row);
    }
    Ok(rows)
}

/// Init with each way of building the client (`bench/src/bin/client-init.rs`), the variants
/// interleaved over `spawns` cold starts like the functions' own.
pub async fn client_init_section(release: &Path, endpoint: &str, spawns: usize, hello: &Bytes) -> Result<Value, Error> {
    const VARIANTS: [&str; 3] = ["env", "chain", "webpki"];
    let binary = release.join("client-init");
    let mut inits = vec![Vec::with_capacity(spawns); VARIANTS.len()];
    for round in 0..spawns + 3 {
        for (variant, samples) in VARIANTS.iter().zip(inits.iter_mut()) {
            let mut function = Function::start_with(&binary, endpoint, 1, &[("BENCH_CLIENT", variant)]).await?;
            function.invoke(hello, 200).await?;
            if round >= 3 {
                samples.push(function.init);
            }
            function.child.kill().await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let p50: Vec<f64> = inits.into_iter().map(|s| ms(percentiles(s).p50)).collect();
    println!(
        "client init p50 ms: built by hand from the variables {:.2}, aws-config chain {:.2} (+{:.2}), chain with the Mozilla roots {:.2} (+{:.2})",
        p50[0],
        p50[1],
        p50[1] - p50[0],
        p50[2],
        p50[2] - p50[0]
    );
    Ok(json!({
        "init_p50_ms": {"env": p50[0], "chain": p50[1], "webpki": p50[2]},
        "chain_minus_env_ms": p50[1] - p50[0],
        "webpki_minus_env_ms": p50[2] - p50[0],
    }))
}
