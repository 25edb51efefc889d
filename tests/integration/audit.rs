//! The operators' audit view on 2,000 attempts: every filter combination walks to exactly the
//! in-memory answer, from keys, within the read bound.

use crate::common;

use payment_attempts::command::NewAttempt;
use payment_attempts::page::{CreatedRange, Cursor, ListQuery};
use payment_attempts::summary::{Summary, SummaryScope};
use payment_attempts::time::Timestamp;
use payment_attempts::{Attempt, AttemptStore, OrganizationId, Status};
use serde_json::json;

const ORG: &str = "org_audit";
const HOUR_MS: i64 = 3_600_000;
/// 2026-05-23T00:00:00Z: the synthetic 48 hours start here.
const T0: i64 = 1_779_494_400_000;

/// xorshift: the same "random" workload every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

async fn seed(store: &AttemptStore, count: usize) -> Vec<Attempt> {
    let org = OrganizationId::parse(ORG).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut all = Vec::new();
    for _ in 0..count {
        let session = match rng.next(21) {
            20 => None,
            s => Some(format!("session_s{s}")),
        };
        let status = ["pending", "succeeded", "failed"][rng.next(3) as usize];
        let mut body = common::attempt_body(session.as_deref(), &format!("0.{:06}", rng.next(1_000_000)));
        body["capability"] = json!(["paid_search", "paid_fetch", "paid_llm", "paid_maps"][rng.next(4) as usize]);
        body["status"] = json!(status);
        if status == "failed" {
            body["error_message"] = json!("rail.declined");
        }
        let at = Timestamp::from_unix_millis(T0 + rng.next(48 * HOUR_MS as u64) as i64).unwrap();
        let attempt = NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org.clone(), at);
        store.create(&attempt, None).await.unwrap();
        all.push(attempt);
    }
    all.sort_by(|a, b| b.id.cmp(&a.id));
    all
}

/// Walks every page with `starting_after` (following `next_page` when the read bound cut a
/// page short); returns the ids, the most Query calls one page took, and how many pages the
/// read bound cut short.
async fn walk(store: &AttemptStore, query: &ListQuery) -> (Vec<String>, u32, usize) {
    let org = OrganizationId::parse(ORG).unwrap();
    let (mut ids, mut worst, mut resumed) = (Vec::new(), 0, 0);
    let mut query = query.clone();
    loop {
        let page = store.list(&org, &query).await.unwrap();
        worst = worst.max(page.reads);
        assert!(page.attempts.len() <= usize::from(query.limit));
        ids.extend(page.attempts.iter().map(|a| a.id.to_string()));
        if !page.has_more {
            assert!(page.resume.is_none());
            break;
        }
        query.cursor = match (page.resume, page.attempts.last()) {
            (Some(resume), _) => {
                resumed += 1;
                Some(resume)
            }
            (None, Some(last)) => {
                assert_eq!(page.attempts.len(), usize::from(query.limit), "a page with more after it is full");
                Some(Cursor::StartingAfter(last.id.clone()))
            }
            (None, None) => panic!("has_more with an empty page and nowhere to resume"),
        };
    }
    (ids, worst, resumed)
}

/// Walks every page backwards with `ending_before`, from before the oldest attempt (following
/// `next_page` when the read bound cut a page short); returns the ids newest first.
async fn walk_back(store: &AttemptStore, query: &ListQuery) -> Vec<String> {
    let org = OrganizationId::parse(ORG).unwrap();
    let oldest = payment_attempts::AttemptId::parse(&format!("payatt_{}", "0".repeat(32))).unwrap();
    let mut query = ListQuery { cursor: Some(Cursor::EndingBefore(oldest)), ..query.clone() };
    let mut pages: Vec<Vec<String>> = Vec::new();
    loop {
        let page = store.list(&org, &query).await.unwrap();
        let ids: Vec<String> = page.attempts.iter().map(|a| a.id.to_string()).collect();
        assert!(ids.windows(2).all(|w| w[0] > w[1]), "each page newest first");
        if !page.has_more {
            assert!(page.resume.is_none());
            pages.push(ids);
            break;
        }
        query.cursor = match (page.resume, page.attempts.first()) {
            (Some(resume), _) => Some(resume),
            (None, Some(newest)) => Some(Cursor::EndingBefore(newest.id.clone())),
            (None, None) => panic!("has_more with an empty page and nowhere to resume"),
        };
        pages.push(ids);
    }
    // Pages come oldest first; the list reads newest first.
    pages.into_iter().rev().flatten().collect()
}

fn combinations() -> Vec<ListQuery> {
    let sessions = [None, Some("session_s3")];
    let statuses: [&[Status]; 3] = [&[], &[Status::Failed], &[Status::Pending, Status::Succeeded]];
    let capabilities = [None, Some("paid_llm")];
    let ranges = [
        CreatedRange::default(),
        CreatedRange { from_ms: Some(T0 + 12 * HOUR_MS), to_ms: None },
        CreatedRange { from_ms: None, to_ms: Some(T0 + 30 * HOUR_MS) },
        CreatedRange { from_ms: Some(T0 + 26 * HOUR_MS), to_ms: Some(T0 + 27 * HOUR_MS - 1) },
    ];
    let mut all = Vec::new();
    for session in sessions {
        for status in statuses {
            for capability in capabilities {
                for created in ranges {
                    all.push(ListQuery {
                        session_id: session.and_then(payment_attempts::id::SessionId::parse),
                        limit: 37,
                        statuses: status.to_vec(),
                        capability: capability.map(str::to_owned),
                        created,
                        ..ListQuery::default()
                    });
                }
            }
        }
    }
    all
}

#[tokio::test]
async fn every_filter_combination_walks_to_the_in_memory_answer() {
    let svc = common::service().await;
    // Sixteen shards from the start (the synthetic attempts are in the past): pages merge them.
    let sixteen = payment_attempts::layout::Layout::default().grown(16, 1).unwrap();
    svc.store.set_layout_for_tests(&OrganizationId::parse(ORG).unwrap(), &sixteen).await.unwrap();
    let all = seed(&svc.store, 2000).await;
    let bounded = svc.store.clone().with_max_reads(2);
    let (mut worst_reads, mut resumed) = (0, 0);
    let queries = combinations();
    for query in &queries {
        let expected: Vec<String> = all.iter().filter(|a| query.matches(a)).map(|a| a.id.to_string()).collect();
        let (ids, reads, cut) = walk(&svc.store, query).await;
        assert_eq!(ids, expected, "{query:?}");
        assert_eq!(cut, 0, "the default bound never cuts a page on 2,000 attempts");
        worst_reads = worst_reads.max(reads);
        // With only 2 Query calls a request, pages stop short and resume: same answer.
        let (ids, _, cut) = walk(&bounded, query).await;
        assert_eq!(ids, expected, "bounded {query:?}");
        resumed += cut;
        // Backwards with ending_before, under the same bound: the same answer.
        assert_eq!(walk_back(&bounded, query).await, expected, "backwards, bounded {query:?}");
    }
    assert!(resumed > 0, "the bounded store did cut some pages short");
    // Nothing matches: an empty page, has_more false, within the default bound.
    let org = OrganizationId::parse(ORG).unwrap();
    let none = ListQuery { capability: Some("paid_nothing".to_owned()), ..ListQuery::default() };
    let page = svc.store.list(&org, &none).await.unwrap();
    assert!(page.attempts.is_empty() && !page.has_more && page.resume.is_none());
    println!(
        "audit: {} filter combinations over {} attempts, walked forwards and backwards; worst filtered page: {} Query calls; empty match: {} Query calls; {} pages resumed under a 2-call bound",
        queries.len(),
        all.len(),
        worst_reads,
        page.reads,
        resumed
    );

    // Through HTTP: the same parameters give the same rows, newest first.
    let expected: Vec<String> = all
        .iter()
        .filter(|a| {
            a.status == Status::Failed && a.capability == "paid_llm" && a.created_at.unix_millis() >= T0 + 12 * HOUR_MS
        })
        .map(|a| a.id.to_string())
        .take(100)
        .collect();
    let from = Timestamp::from_unix_millis(T0 + 12 * HOUR_MS).unwrap();
    let reply = svc
        .get(ORG, &format!("/v1/payments/attempts?limit=100&status=failed&capability=paid_llm&created[gte]={from}"))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let ids: Vec<String> =
        reply.json()["data"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, expected);
    let epoch = (T0 + 12 * HOUR_MS) / 1000;
    let same = svc
        .get(
            ORG,
            &format!("/v1/payments/attempts?limit=100&status=failed&capability=paid_llm&created%5Bgte%5D={epoch}"),
        )
        .await;
    assert_eq!(same.json()["data"], reply.json()["data"], "epoch seconds and percent-encoded brackets");
    let bad = svc.get(ORG, "/v1/payments/attempts?created[gte]=1779704041&created[lt]=1779704040").await;
    assert_eq!((bad.status, bad.error().1.as_deref()), (400, Some("created[gte]")));
}

/// Every attempt the query matches, as the list returns them.
async fn all_of(store: &AttemptStore, query: ListQuery) -> Vec<Attempt> {
    let org = OrganizationId::parse(ORG).unwrap();
    let mut query = ListQuery { limit: 100, ..query };
    let mut all = Vec::new();
    loop {
        let page = store.list(&org, &query).await.unwrap();
        let more = page.has_more;
        query.cursor = page.attempts.last().map(|a| Cursor::StartingAfter(a.id.clone()));
        all.extend(page.attempts);
        if !more {
            return all;
        }
    }
}

#[tokio::test]
async fn summaries_equal_the_page_walk_totals_after_random_transitions() {
    let svc = common::service().await;
    let seeded = seed(&svc.store, 2000).await;
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut pending: Vec<String> =
        seeded.iter().filter(|a| a.status == Status::Pending).map(|a| a.id.to_string()).collect();
    for _ in 0..500 {
        let id = pending.swap_remove(rng.next(pending.len() as u64) as usize);
        let to = ["succeeded", "failed", "released"][rng.next(3) as usize];
        let mut body = json!({"status": to});
        if to == "failed" {
            body["error_message"] = json!("rail.timeout");
        }
        let reply = svc.post(ORG, &format!("/v1/payments/attempts/{id}"), &body).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let org = OrganizationId::parse(ORG).unwrap();
    svc.summarize().await;
    let everything = all_of(&svc.store, ListQuery::default()).await;
    assert_eq!(everything.len(), 2000);
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: None }).await.unwrap();
    assert_eq!(counted, Summary::of(&everything), "organization, all time");
    assert_eq!(
        counted.get(Status::Released).count
            + counted.get(Status::Succeeded).count
            + counted.get(Status::Failed).count
            + counted.get(Status::Pending).count,
        2000
    );
    for s in 0..20 {
        let session = payment_attempts::id::SessionId::parse(&format!("session_s{s}")).unwrap();
        let walked = all_of(&svc.store, ListQuery { session_id: Some(session.clone()), ..ListQuery::default() }).await;
        let counted = svc.store.summary(&org, &SummaryScope::Session(session)).await.unwrap();
        assert_eq!(counted, Summary::of(&walked), "session_s{s}");
    }
    let (from, to) = ((T0 / HOUR_MS) + 12, (T0 / HOUR_MS) + 29);
    let created = CreatedRange { from_ms: Some(from * HOUR_MS), to_ms: Some((to + 1) * HOUR_MS - 1) };
    let walked = all_of(&svc.store, ListQuery { created, ..ListQuery::default() }).await;
    let counted = svc.store.summary(&org, &SummaryScope::Organization { hours: Some((from, to)) }).await.unwrap();
    assert_eq!(counted, Summary::of(&walked), "organization, hours {from}..={to}");

    // Through HTTP, with exact decimals.
    let gte = Timestamp::from_unix_millis(from * HOUR_MS).unwrap();
    let lt = Timestamp::from_unix_millis((to + 1) * HOUR_MS).unwrap();
    let reply = svc.get(ORG, &format!("/v1/payments/attempts/summary?created[gte]={gte}&created[lt]={lt}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let expected = serde_json::to_value(Summary::of(&walked)).unwrap();
    let body = reply.json();
    assert_eq!(body["object"], "payment_attempt_summary");
    assert_eq!(
        (body["count"].clone(), body["by_status"].clone()),
        (expected["count"].clone(), expected["by_status"].clone())
    );
    assert!(
        reply.text.contains(&format!(r#""amount_usd":{},"#, Summary::of(&walked).total().amount_usd)),
        "{}",
        reply.text
    );
    let reply = svc.get(ORG, "/v1/payments/attempts/summary?session_id=session_s3").await.json();
    assert_eq!(reply["session_id"], "session_s3");
    for (query, param) in [
        ("created[gte]=2026-05-25T02:30:00Z&created[lt]=2026-05-25T03:00:00Z", "created[gte]"),
        ("created[gte]=2026-05-25T03:00:00Z&created[lt]=2026-05-25T02:00:00Z", "created[gte]"),
        ("created[gte]=2026-05-25T02:00:00Z", "created[lt]"),
        ("session_id=session_s3&created[gte]=2026-05-25T02:00:00Z&created[lt]=2026-05-25T03:00:00Z", "created[gte]"),
        ("status=failed", "status"),
    ] {
        let reply = svc.get(ORG, &format!("/v1/payments/attempts/summary?{query}")).await;
        assert_eq!((reply.status, reply.error().1.as_deref()), (400, Some(param)), "{query}");
    }
    println!("summary: 2,000 attempts, 500 transitions: organization, 20 sessions and an 18-hour range equal their page walks");
}

/// Hourly summaries and `created[lt]` cut at the exact millisecond; a range is at most 744 hours.
#[tokio::test]
async fn summary_hours_end_at_their_last_millisecond() {
    let svc = common::service().await;
    let org = OrganizationId::parse(ORG).unwrap();
    let hour = T0 + 5 * HOUR_MS;
    let at = |ms: i64| Timestamp::from_unix_millis(ms).unwrap();
    let body = common::attempt_body(None, "1.5").to_string();
    for ms in [hour - 1, hour] {
        let attempt = NewAttempt::from_json(body.as_bytes()).unwrap().into_attempt(org.clone(), at(ms));
        svc.store.create(&attempt, None).await.unwrap();
    }
    svc.summarize().await;
    let count = |query: String| {
        let svc = &svc;
        async move {
            let reply = svc.get(ORG, &format!("/v1/payments/attempts/summary?{query}")).await;
            assert_eq!(reply.status, 200, "{query}: {}", reply.text);
            reply.json()["count"].as_i64().unwrap()
        }
    };
    let (h_minus_1, h, h_plus_1) = (at(hour - HOUR_MS), at(hour), at(hour + HOUR_MS));
    // hh:59:59.999 is in the hour before; the next hour's first millisecond in the next.
    assert_eq!(count(format!("created[gte]={h_minus_1}&created[lt]={h}")).await, 1);
    assert_eq!(count(format!("created[gte]={h}&created[lt]={h_plus_1}")).await, 1);
    assert_eq!(count(format!("created[gte]={h_minus_1}&created[lt]={h_plus_1}")).await, 2);
    let listed = svc.get(ORG, &format!("/v1/payments/attempts?created[lt]={h}")).await.json();
    let created: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|r| r["created_at"].as_str().unwrap()).collect();
    assert_eq!(created, vec![at(hour - 1).to_string()], "created[lt] excludes the hour's first millisecond");
    let listed = svc.get(ORG, &format!("/v1/payments/attempts?created[gte]={h}")).await.json();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    // 744 hours (31 days) is the longest range.
    let end = |hours: i64| at(hour + hours * HOUR_MS);
    assert_eq!(count(format!("created[gte]={h}&created[lt]={}", end(744))).await, 1);
    let refused =
        svc.get(ORG, &format!("/v1/payments/attempts/summary?created[gte]={h}&created[lt]={}", end(745))).await;
    assert_eq!((refused.status, refused.error().1.as_deref()), (400, Some("created[gte]")));
}

/// `count` attempts of the organization with full metadata (about 8 KB), or the largest
/// quote-heavy bodies the API takes; written by 8 writers at once.
async fn seed_heavy(store: &AttemptStore, org: &OrganizationId, count: usize, quotes: bool) {
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, org) = (store.clone(), org.clone());
            tokio::spawn(async move {
                for i in (w..count).step_by(8) {
                    let session = if quotes { "session_big".to_owned() } else { format!("session_s{}", i % 4) };
                    let mut body = common::attempt_body(Some(&session), "0.5");
                    // Stripe's limits: 50 keys, values of 500 characters.
                    let value = if quotes { "\"".repeat(500) } else { "m".repeat(500) };
                    let keys = if quotes { 50 } else { 16 };
                    let metadata: serde_json::Map<_, _> = (0..keys).map(|k| (format!("k{k}"), json!(value))).collect();
                    body["metadata"] = metadata.into();
                    if quotes {
                        body["receipt"] = json!({ "q": "\"".repeat(8_000) });
                    }
                    let attempt = NewAttempt::from_json(body.to_string().as_bytes())
                        .unwrap()
                        .into_attempt(org.clone(), Timestamp::now());
                    store.create(&attempt, None).await.unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
}

/// A member listing with a filter that matches nothing, over 1,600 attempts of about 8 KB:
/// every page stops at the request's read budget and says where to go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_reads_at_most_its_budget_whatever_its_filters() {
    let svc = common::service().await;
    let org = OrganizationId::parse("org_budget").unwrap();
    seed_heavy(&svc.store, &org, 1_600, false).await;
    let mut query = ListQuery { capability: Some("paid_nothing".to_owned()), ..ListQuery::default() };
    let (mut pages, mut worst, mut total) = (0, 0.0f64, 0.0);
    loop {
        let page = svc.store.list(&org, &query).await.unwrap();
        pages += 1;
        assert!(page.attempts.is_empty());
        assert!(page.read_units <= payment_attempts::store::READ_UNITS_PER_REQUEST, "{} RCU", page.read_units);
        worst = worst.max(page.read_units);
        total += page.read_units;
        match page.resume {
            Some(cursor) => {
                assert!(page.has_more, "a page cut by its budget says there is more");
                query.cursor = Some(cursor);
            }
            None => break,
        }
        assert!(pages < 100, "the walk ends");
    }
    assert!(pages > 1, "the budget cut the walk into pages");
    println!("read budget: a filter matching none of 1,600 attempts of ~8 KB: {pages} pages, at most {worst:.0} RCU a page, {total:.0} RCU in all");
}

/// Attempts carrying the largest, quote-heavy bodies the API takes, in one session (one
/// Query reads them all within the read budget): no page exceeds what a Lambda function may
/// return, and the walk still finds each attempt once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_exceeds_a_lambda_response() {
    let svc = common::service().await;
    let org = "org_bytes";
    seed_heavy(&svc.store, &OrganizationId::parse(org).unwrap(), 60, true).await;
    let (mut seen, mut pages, mut largest) = (std::collections::HashSet::new(), 0, 0);
    let mut cursor = String::new();
    loop {
        let reply = svc.get(org, &format!("/v1/payments/attempts?limit=100&session_id=session_big{cursor}")).await;
        assert_eq!(reply.status, 200);
        // As Lambda carries it: the body escaped again inside the response payload.
        let payload = reply.text.len() + reply.text.bytes().filter(|b| matches!(b, b'"' | b'\\')).count();
        assert!(payload < 6 * 1024 * 1024 - 64 * 1024, "{payload} bytes");
        largest = largest.max(payload);
        pages += 1;
        let page = reply.json();
        let rows = page["data"].as_array().unwrap();
        for row in rows {
            assert!(seen.insert(row["id"].as_str().unwrap().to_owned()), "listed twice");
        }
        if page["has_more"] != json!(true) {
            break;
        }
        cursor = format!("&starting_after={}", rows.last().unwrap()["id"].as_str().unwrap());
    }
    assert_eq!(seen.len(), 60);
    assert!(pages > 1 && largest > 5_000_000, "a page of 100 such rows does not fit: it ended early, full");
    println!("page bytes: 60 attempts of the largest quote-heavy bodies, limit=100: {pages} pages, the largest {largest} bytes as a Lambda payload");
}

/// An organization at the most shards, every row the largest the API stores (full metadata,
/// a receipt at creation and another at settlement): a list's first round, one row of every
/// shard, still keeps to the read budget, and the rows cost what the budget assumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_largest_rows_on_the_most_shards_fit_the_read_budget() {
    use payment_attempts::layout::{Layout, MAX_SHARDS};
    use payment_attempts::store::{LARGEST_ROW_UNITS, READ_UNITS_PER_REQUEST};
    let svc = common::service().await;
    let org = "org_widest";
    let most = Layout::default().grown(MAX_SHARDS, 1).unwrap();
    svc.store.set_layout_for_tests(&OrganizationId::parse(org).unwrap(), &most).await.unwrap();
    let receipt = |c: &str| json!({ "q": c.repeat(payment_attempts::validation::MAX_RECEIPT_BYTES - 10) });
    // Two attempts on every shard: ids' last bytes (random in production) set here.
    let count = 2 * usize::from(MAX_SHARDS);
    for i in 0..count {
        let mut body = common::attempt_body(Some("session_wide"), "0.5");
        let metadata: serde_json::Map<_, _> = (0..50).map(|k| (format!("{k:0>40}"), json!("m".repeat(500)))).collect();
        body["metadata"] = metadata.into();
        body["receipt"] = receipt("a");
        let mut attempt = NewAttempt::from_json(body.to_string().as_bytes())
            .unwrap()
            .into_attempt(OrganizationId::parse(org).unwrap(), Timestamp::now());
        let id = format!("{}{:02x}", &attempt.id.as_str()[..attempt.id.as_str().len() - 2], i);
        attempt.id = payment_attempts::AttemptId::parse(&id).unwrap();
        svc.store.create(&attempt, None).await.unwrap();
        let settle = json!({
            "status": "failed", "receipt": receipt("b"), "error_message": "e".repeat(200),
            "status_details": {"reason": "r".repeat(100), "source": "rail", "code": "c".repeat(40)},
        });
        let settled = svc.post(org, &format!("/v1/payments/attempts/{id}"), &settle).await;
        assert_eq!(settled.status, 200, "attempt {i}: {}", settled.text);
    }
    let query = ListQuery { capability: Some("paid_nothing".to_owned()), ..ListQuery::default() };
    let org = OrganizationId::parse(org).unwrap();
    // One round: a row of every shard.
    let round = svc.store.clone().with_max_reads(1).list(&org, &query).await.unwrap();
    assert_eq!(round.reads, u32::from(MAX_SHARDS));
    let per_row = round.read_units / f64::from(MAX_SHARDS);
    assert!(per_row <= LARGEST_ROW_UNITS && per_row > LARGEST_ROW_UNITS - 2.0, "{per_row} RCU a row");
    let page = svc.store.list(&org, &query).await.unwrap();
    assert!(page.read_units <= READ_UNITS_PER_REQUEST, "{} RCU", page.read_units);
    println!(
        "read budget at {MAX_SHARDS} shards of the largest rows: {per_row:.1} RCU a row (budgeted {LARGEST_ROW_UNITS}); a page read {:.0} RCU in {} Queries",
        page.read_units, page.reads
    );
}
