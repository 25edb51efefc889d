//! `make scale`: what one organization's writes cost DynamoDB, per partition key, through a
//! metering proxy (`metering.rs`) between the service and DynamoDB Local.
//!
//! Records `SCALE_ATTEMPTS` attempts (default 300) for one organization, each created and then
//! settled with an Idempotency-Key and a request_hash, over 20 sessions, through the same
//! handlers the Lambdas run, the organization grown to `SCALE_SHARDS` shards (default 16) first; the summarizer counts
//! the creates, then the settles, from the stream in the template's batches; then walks the organization's list
//! in pages of 50, lists one session, and retrieves attempts. Prints the write units per
//! attempt in all (the summarizer's included) and on the hottest partition key (and the
//! ceiling that implies, at DynamoDB's 1,000 WCU/s per key), items and read units per page,
//! and calls per retrieve; checks the summary against the page walk; writes JSON to
//! `bench/results/`.

use std::path::Path;

use payment_attempts::command::NewAttempt;
use payment_attempts::runtime::Settings;
use payment_attempts::time::Timestamp;
use payment_attempts::AttemptStore;
use payment_attempts::{AttemptId, Cursor, ListQuery, OrganizationId};
use payment_attempts_local::dynamodb_local::{self, DynamoDbLocal};
use payment_attempts_local::local_api::{GatewayRequest, LocalApi};
mod metering;

use metering::{Meter, MeteringProxy};
use payment_attempts_local::stream_mapping::StreamMapping;
use payment_attempts_local::template::Template;
use payment_attempts_local::token;
use serde_json::{json, Value};

type Error = Box<dyn std::error::Error + Send + Sync>;

const ORG: &str = "org_scale";
const TABLE: &str = "scale";
const SESSIONS: usize = 20;
/// DynamoDB's write throughput per partition key.
const WCU_PER_KEY_PER_SECOND: f64 = 1000.0;

fn request(method: &str, path: &str, query: &str, body: Option<&Value>, key: Option<&str>) -> GatewayRequest {
    let mut headers =
        vec![("authorization".to_owned(), format!("Bearer {}", token::unsigned(&json!({"org_id": ORG}))))];
    if body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
    }
    headers.extend(key.map(|k| ("idempotency-key".to_owned(), k.to_owned())));
    let body = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
    GatewayRequest::from_loopback(method, &format!("{path}?{query}"), headers, body)
}

async fn call(api: &LocalApi, request: &GatewayRequest, status: u16) -> Result<Value, Error> {
    let response = api.call(request).await;
    let got = response.status().as_u16();
    let body = http_body_util::BodyExt::collect(response.into_body()).await?.to_bytes();
    if got != status {
        return Err(format!("{} {}: {got} {}", request.method, request.path, String::from_utf8_lossy(&body)).into());
    }
    Ok(serde_json::from_slice(&body)?)
}

/// Adds `more`'s write units and calls to `meter`.
fn add(meter: &mut Meter, more: &Meter) {
    for (key, units) in &more.wcu_by_key {
        *meter.wcu_by_key.entry(key.clone()).or_default() += units;
    }
    for (operation, calls) in &more.calls {
        *meter.calls.entry(operation.clone()).or_default() += calls;
    }
    meter.stored.extend(more.stored.iter().map(|(key, bytes)| (key.clone(), *bytes)));
}

/// Where a partition key's items belong (the key formats of shared/src/store/keys.rs).
fn kind_of(key: &str) -> &'static str {
    match key {
        k if k.starts_with("index ") => "session index",
        k if k.contains("#ATT#") => "attempts",
        k if k.contains("#IDEM#") || k.contains("#WIDEM#") => "idempotency records",
        k if k.contains("#HASH#") => "replay guards",
        k if k.contains("#SUMD#") => "summarizer markers",
        k if k.contains("#SUM") => "summary counters",
        _ => "other",
    }
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let attempts: usize = std::env::var("SCALE_ATTEMPTS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let engine = tokio::task::spawn_blocking(DynamoDbLocal::start).await??;
    let proxy = MeteringProxy::start(&engine.endpoint()).await?;
    let client = dynamodb_local::client(proxy.endpoint());
    let template = Template::load(&root.join("template.yaml"))?;
    template.create_table(&client, TABLE).await?;
    let settings = Settings::from_vars(|name| match name {
        "TABLE_NAME" => Some(TABLE.to_owned()),
        _ => std::env::var(name).ok(),
    })?;
    let shards: u16 = std::env::var("SCALE_SHARDS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    // Grown by a store whose layouts live 50 ms, so the step starts in a blink; the service's
    // store keeps the functions' time to live, and reads the grown layout once.
    let grower = AttemptStore::new(client.clone(), TABLE).with_layout_ttl(std::time::Duration::from_millis(50));
    for org in [ORG, "org_manywriters"] {
        grower.grow(&OrganizationId::parse(org).ok_or("org id")?, shards).await?;
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let store = AttemptStore::new(client, TABLE);
    let mapping = StreamMapping::new(&template, proxy.endpoint(), TABLE, store.clone()).await?;
    let batch_size = template.stream_mapping("summarizer").map_or(0, |m| m.batch_size);
    let api = LocalApi::new(&template, store.clone(), settings);

    proxy.reset();
    let mut ids = Vec::with_capacity(attempts);
    for i in 0..attempts {
        let body = json!({
            "session_id": format!("session_s{}", i % SESSIONS), "capability": "paid_search",
            "operation": "search.query", "rail": "mpp_tempo", "amount_usd": 0.014,
            "target_url": "https://api.example.com/v1/search",
            "request_hash": format!("sha256:{i:064x}"), "receipt": {"tx": format!("0x{i:x}")}
        });
        let created =
            call(&api, &request("POST", "/v1/payments/attempts", "", Some(&body), Some(&format!("create-{i}"))), 201)
                .await?;
        ids.push(created["id"].as_str().ok_or("no id")?.to_owned());
    }
    // The summarizer counts them from the stream, in the template's batches; the settles come
    // after, so each attempt's create and settle are counted in different batches, as when a
    // settle follows its authorization by seconds.
    let (mut service_writes, mut summarizer_writes) = (proxy.meter(), Meter::default());
    let creates = proxy.meter();
    proxy.reset();
    let mut delivered = mapping.drain().await?;
    add(&mut summarizer_writes, &proxy.meter());
    proxy.reset();
    for (i, id) in ids.iter().enumerate() {
        let settle = json!({"status": "succeeded", "receipt": {"settlement": format!("0x{i:x}")}});
        let target = format!("/v1/payments/attempts/{id}");
        call(&api, &request("POST", &target, "", Some(&settle), Some(&format!("settle-{i}"))), 200).await?;
    }
    let settles = proxy.meter();
    add(&mut service_writes, &settles);
    proxy.reset();
    delivered += mapping.drain().await?;
    add(&mut summarizer_writes, &proxy.meter());
    let mut writes = Meter::default();
    add(&mut writes, &service_writes);
    add(&mut writes, &summarizer_writes);
    let per_attempt = |units: f64| units / attempts as f64;
    let (hottest_key, hottest_units) = writes.hottest().map(|(k, v)| (k.to_owned(), v)).unwrap_or_default();
    let keys = writes.wcu_by_key.len();
    // How evenly the attempts' shards filled (ids' last bytes are random): the least and the
    // most written shard, against an even share.
    let shard_units: Vec<f64> =
        writes.wcu_by_key.iter().filter(|(key, _)| kind_of(key) == "attempts").map(|(_, units)| *units).collect();
    // A shard never written counts as empty.
    let even = shard_units.iter().sum::<f64>() / f64::from(shards);
    let least = if shard_units.len() < usize::from(shards) {
        0.0
    } else {
        shard_units.iter().copied().fold(f64::INFINITY, f64::min)
    };
    let fill = (least / even, shard_units.iter().copied().fold(0.0, f64::max) / even);
    // Where the units go, and the bytes stay, by kind of item.
    let mut by_kind: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for (key, units) in &writes.wcu_by_key {
        *by_kind.entry(kind_of(key)).or_default() += units / attempts as f64;
    }
    let mut stored_by_kind: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
    for ((key, _), bytes) in &writes.stored {
        *stored_by_kind.entry(kind_of(key)).or_default() += *bytes as f64 / attempts as f64;
    }

    proxy.reset();
    let mut pages = 0;
    let mut cursor = String::new();
    let (mut walked, mut walked_usd) = (0usize, rust_decimal::Decimal::ZERO);
    loop {
        let page =
            call(&api, &request("GET", "/v1/payments/attempts", &format!("limit=50{cursor}"), None, None), 200).await?;
        pages += 1;
        let rows = page["data"].as_array().ok_or("no data")?;
        walked += rows.len();
        for row in rows {
            walked_usd += row["amount_usd"].to_string().parse::<rust_decimal::Decimal>()?;
        }
        if page["has_more"] != json!(true) {
            break;
        }
        cursor = format!("&starting_after={}", rows.last().and_then(|r| r["id"].as_str()).ok_or("no last id")?);
    }
    let org_pages = proxy.meter();
    proxy.reset();
    call(&api, &request("GET", "/v1/payments/attempts", "limit=50&session_id=session_s3", None, None), 200).await?;
    let session_page = proxy.meter();
    proxy.reset();
    let retrieves = ids.len().min(50);
    // What the API shows of an attempt (its fields, receipts and history), in compact JSON.
    let mut shown = 0;
    for id in ids.iter().take(retrieves) {
        let attempt = call(&api, &request("GET", &format!("/v1/payments/attempts/{id}"), "", None, None), 200).await?;
        shown += attempt.to_string().len();
    }
    let shown = shown as f64 / retrieves as f64;
    let retrieved = proxy.meter();
    let summary = call(&api, &request("GET", "/v1/payments/attempts/summary", "", None, None), 200).await?;
    let summary_matches = summary["count"] == json!(walked)
        && summary["amount_usd"].to_string().parse::<rust_decimal::Decimal>()? == walked_usd
        && walked == attempts;

    // One process hands out ids' last bytes in turn, so above every shard holds an even share
    // of each page. Many writers each start at a random byte: across them, an attempt's shard
    // is random. The same page walk over such ids (last byte from a fixed-seed generator):
    let many = OrganizationId::parse("org_manywriters").ok_or("org id")?;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..attempts {
        let body = json!({"capability": "paid_search", "operation": "search.query", "amount_usd": 0.014,
                          "target_url": "https://api.example.com/v1/search"});
        let mut attempt =
            NewAttempt::from_json(body.to_string().as_bytes())?.into_attempt(many.clone(), Timestamp::now());
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let id = format!("{}{:02x}", &attempt.id.as_str()[..attempt.id.as_str().len() - 2], seed as u8);
        attempt.id = AttemptId::parse(&id).ok_or("attempt id")?;
        store.create(&attempt, None).await?;
    }
    proxy.reset();
    let (mut random_pages, mut query) = (0, ListQuery { limit: 50, ..ListQuery::default() });
    loop {
        let page = store.list(&many, &query).await?;
        random_pages += 1;
        match page.attempts.last().filter(|_| page.has_more) {
            Some(last) => query.cursor = Some(Cursor::StartingAfter(last.id.clone())),
            None => break,
        }
    }
    let random_walk = proxy.meter();

    let report = json!({
        "attempts": attempts, "sessions": SESSIONS, "attempt_shards": shards,
        "summarizer": {
            "batch_size": batch_size, "records_delivered": delivered,
            "wcu_per_attempt": per_attempt(summarizer_writes.total_wcu()),
            "calls": summarizer_writes.calls,
            "summary_equals_page_walk": summary_matches,
        },
        "writes": {
            "service_wcu_per_attempt": per_attempt(service_writes.total_wcu()),
            "wcu_per_attempt": per_attempt(writes.total_wcu()),
            "partition_keys_written": keys,
            "attempt_shards_written": shard_units.len(),
            "attempt_shard_fill_least_and_most_over_even": [fill.0, fill.1],
            "hottest_key": hottest_key,
            "hottest_key_wcu_per_attempt": per_attempt(hottest_units),
            "attempts_per_second_ceiling": WCU_PER_KEY_PER_SECOND / per_attempt(hottest_units),
            "calls": service_writes.calls,
            "calls_per_keyed_create": per_attempt(creates.total_calls() as f64),
            "calls_per_keyed_settle": per_attempt(settles.total_calls() as f64),
            "wcu_per_keyed_create": per_attempt(creates.total_wcu()),
            "wcu_per_keyed_settle": per_attempt(settles.total_wcu()),
            "wcu_per_attempt_by_kind": by_kind,
        },
        "storage": {
            "api_json_bytes_per_attempt": shown,
            "stored_bytes_per_attempt_by_kind": stored_by_kind,
            "attempt_item_over_api_json": stored_by_kind.get("attempts").copied().unwrap_or(0.0) / shown,
        },
        "org_list_page_of_50": {
            "pages": pages,
            "rows_read_per_page": org_pages.rows_read as f64 / pages as f64,
            "rcu_per_page": org_pages.rcu / pages as f64,
            "queries_per_page": org_pages.calls("Query") as f64 / pages as f64,
        },
        "org_list_page_of_50_ids_from_many_writers": {
            "pages": random_pages,
            "rows_read_per_page": random_walk.rows_read as f64 / random_pages as f64,
            "rcu_per_page": random_walk.rcu / random_pages as f64,
            "queries_per_page": random_walk.calls("Query") as f64 / random_pages as f64,
        },
        "session_page_of_50": {"queries": session_page.calls("Query"), "rows_read": session_page.rows_read, "rcu": session_page.rcu},
        "retrieve": {"calls_per_retrieve": retrieved.total_calls() as f64 / retrieves as f64, "get_items": retrieved.calls("GetItem")},
    });
    println!("scale: {attempts} attempts (create + settle, keyed, with request_hash) for one organization over {SESSIONS} sessions, {shards} shards");
    let num = |path: &[&str]| path.iter().fold(&report, |v, key| &v[*key]).as_f64().unwrap_or(f64::NAN);
    let page = |key: &str| {
        let at = |field: &str| num(&[key, field]);
        format!(
            "{:.1} rows read and {:.1} RCU per page, {:.2} Query calls per page",
            at("rows_read_per_page"),
            at("rcu_per_page"),
            at("queries_per_page")
        )
    };
    println!(
        "writes: {:.2} WCU per attempt in all ({:.2} service, {:.2} summarizer at batches of {batch_size}), over {keys} partition keys; hottest key {hottest_key}: {:.3} WCU per attempt -> ceiling {:.0} attempts/s",
        num(&["writes", "wcu_per_attempt"]),
        num(&["writes", "service_wcu_per_attempt"]),
        num(&["summarizer", "wcu_per_attempt"]),
        num(&["writes", "hottest_key_wcu_per_attempt"]),
        num(&["writes", "attempts_per_second_ceiling"]),
    );
    println!("org list, ids from many writers (random shards): {}", page("org_list_page_of_50_ids_from_many_writers"));
    println!(
        "DynamoDB calls per keyed create {:.2} ({:.2} WCU), per keyed settle {:.2} ({:.2} WCU)",
        num(&["writes", "calls_per_keyed_create"]),
        num(&["writes", "wcu_per_keyed_create"]),
        num(&["writes", "calls_per_keyed_settle"]),
        num(&["writes", "wcu_per_keyed_settle"]),
    );
    let kinds: Vec<String> = by_kind.iter().map(|(kind, units)| format!("{kind} {units:.2}")).collect();
    println!("WCU per attempt by kind: {}", kinds.join(", "));
    println!(
        "attempt shards: {} written, the least {:.2}x and the most {:.2}x an even share",
        shard_units.len(),
        fill.0,
        fill.1
    );
    let kinds: Vec<String> = stored_by_kind.iter().map(|(kind, bytes)| format!("{kind} {bytes:.0}")).collect();
    println!(
        "stored bytes per attempt by kind: {}; the API shows {shown:.0} bytes of JSON (attempt item {:.2}x that)",
        kinds.join(", "),
        num(&["storage", "attempt_item_over_api_json"]),
    );
    println!(
        "org list, pages of 50: {}; session page: {} Query; retrieve: {:.2} calls",
        page("org_list_page_of_50"),
        session_page.calls("Query"),
        num(&["retrieve", "calls_per_retrieve"]),
    );
    println!("summary after the summarizer ({delivered} stream records): equals the page walk: {summary_matches}");
    if !summary_matches {
        return Err(
            format!("summary {summary} does not equal the page walk ({walked} attempts, {walked_usd} USD)").into()
        );
    }
    let out = root.join("bench/results");
    std::fs::create_dir_all(&out)?;
    let file = out.join(format!("scale-{}.json", Timestamp::now().to_string().replace(':', "-")));
    std::fs::write(&file, serde_json::to_string_pretty(&report)?)?;
    println!("written to {}", file.display());
    drop(engine);
    Ok(())
}
