//! The checker: the history against what is stored.

use super::*;
use crate::common::events::try_deduplicated;
use history::{is_final, Op, Reply, Route, Write};
use payment_attempts_local::eventbridge_local::Delivered;

/// Every stored attempt of the organization, whole (retrieve), by id, from a page walk.
pub async fn walk(svc: &Service) -> BTreeMap<String, Value> {
    let mut stored = BTreeMap::new();
    let mut cursor = String::new();
    loop {
        let page = svc.get(ORG, &format!("{LIST}?limit=100{cursor}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let page = page.json();
        let mut last = None;
        for row in page["data"].as_array().unwrap() {
            let id = row["id"].as_str().unwrap().to_owned();
            let whole = svc.get(ORG, &format!("{LIST}/{id}")).await;
            assert_eq!(whole.status, 200, "{}", whole.text);
            assert!(stored.insert(id.clone(), whole.json()).is_none(), "{id} listed twice");
            last = Some(id);
        }
        if page["has_more"] != json!(true) {
            return stored;
        }
        // A page cut short by its read budget says where to go on.
        cursor = match page["next_page"]["starting_after"].as_str() {
            Some(after) => format!("&starting_after={after}"),
            None => format!("&starting_after={}", last.expect("a page with more has rows")),
        };
    }
}

/// The history against what is stored: every violation, in words.
pub async fn check(history: &[Op], stored: &BTreeMap<String, Value>, svc: &Service) -> Vec<String> {
    let mut violations = Vec::new();
    let mut by_tag: HashMap<&str, Vec<&Value>> = HashMap::new();
    for attempt in stored.values() {
        match attempt["metadata"]["op"].as_str() {
            Some(tag) => by_tag.entry(tag).or_default().push(attempt),
            None => violations.push(format!("stored attempt {} was never asked for", attempt["id"])),
        }
    }
    let asked: std::collections::HashSet<&str> = history.iter().map(|op| op.tag.as_str()).collect();
    for tag in by_tag.keys().filter(|tag| !asked.contains(*tag)) {
        violations.push(format!("stored attempt tagged {tag} matches no write"));
    }
    for op in history {
        let answers: Vec<(u16, &str)> = op
            .replies
            .iter()
            .filter_map(|reply| match reply {
                Reply::Answer { status, body, .. } => Some((*status, body.as_str())),
                _ => None,
            })
            .collect();
        for (status, body) in &answers {
            if *status >= 500 && *status != 503 {
                violations.push(format!("{}: a {status} answer: {body}", op.tag));
            }
        }
        for reply in &op.replies {
            if let Reply::Answer { status: 503, retry_after: false, .. } = reply {
                violations.push(format!("{}: a 503 without Retry-After", op.tag));
            }
        }
        // Under one key, every final answer is the same answer, byte for byte.
        let finals: Vec<&(u16, &str)> = answers.iter().filter(|(s, b)| is_final(*s, b)).collect();
        if op.route.keyed() && finals.windows(2).any(|pair| pair[0] != pair[1]) {
            violations.push(format!("{}: different final answers under one key: {finals:?}", op.tag));
        }
        let last_final = op.final_answer();
        match &op.write {
            Write::Create => {
                let found = by_tag.get(op.tag.as_str()).map_or(&[][..], Vec::as_slice);
                if found.len() > 1 {
                    violations.push(format!("{}: stored {} times", op.tag, found.len()));
                }
                match last_final {
                    Some((status, body)) if (200..300).contains(&status) => {
                        if found.len() != 1 {
                            violations.push(format!("{}: acknowledged but stored {} times", op.tag, found.len()));
                        } else if op.route != Route::Sqs {
                            let answered: Value = serde_json::from_str(body).unwrap_or(Value::Null);
                            if let Some(difference) = created_differently(&answered, found[0]) {
                                violations
                                    .push(format!("{}: stored differently from its answer: {difference}", op.tag));
                            }
                        }
                    }
                    Some((status, body)) if !found.is_empty() => {
                        violations.push(format!("{}: refused ({status} {body}) yet stored", op.tag))
                    }
                    _ => {}
                }
            }
            Write::Settle { attempt, to } => {
                let Some(stored) = stored.get(attempt) else {
                    violations.push(format!("{}: settles {attempt}, which is not stored", op.tag));
                    continue;
                };
                let history = stored["status_history"].as_array().cloned().unwrap_or_default();
                if history.len() > 2 {
                    violations.push(format!("{attempt}: {} status changes", history.len()));
                }
                let applied = history.iter().filter(|change| change["reason"] == json!(op.tag)).count();
                if applied > 1 {
                    violations.push(format!("{}: applied {applied} times", op.tag));
                }
                match last_final {
                    Some((status, body)) if (200..300).contains(&status) => {
                        if applied != 1 || stored["status"] != json!(to.as_str()) {
                            violations.push(format!(
                                "{}: acknowledged, but {attempt} shows it applied {applied} times, status {}",
                                op.tag, stored["status"]
                            ));
                        } else if op.route != Route::Sqs
                            && serde_json::from_str::<Value>(body).ok().as_ref() != Some(stored)
                        {
                            violations.push(format!("{}: answered {body}, stored {stored}", op.tag));
                        }
                    }
                    Some((status, body)) if applied > 0 => {
                        violations.push(format!("{}: refused ({status} {body}) yet applied", op.tag))
                    }
                    _ => {}
                }
            }
        }
    }
    // Summaries: the organization's and each session's equal the walk's totals.
    let org = OrganizationId::parse(ORG).unwrap();
    let mut walked: BTreeMap<Option<String>, Summary> = BTreeMap::new();
    for attempt in stored.values() {
        let status = Status::parse(attempt["status"].as_str().unwrap_or_default()).unwrap_or(Status::Pending);
        let amount: rust_decimal::Decimal = attempt["amount_usd"].to_string().parse().unwrap_or_default();
        walked.entry(None).or_default().add(status, 1, amount);
        if let Some(session) = attempt["session_id"].as_str() {
            walked.entry(Some(session.to_owned())).or_default().add(status, 1, amount);
        }
    }
    for (session, expected) in &walked {
        let scope = match session {
            None => SummaryScope::Organization { hours: None },
            Some(session) => SummaryScope::Session(payment_attempts::id::SessionId::parse(session).unwrap()),
        };
        let counted = svc.store.summary(&org, &scope).await.unwrap();
        if &counted != expected {
            violations.push(format!("summary of {session:?}: counted {counted:?}, walked {expected:?}"));
        }
    }
    violations
}

/// How a stored attempt differs from the create's answer, in what a later settle leaves alone.
pub fn created_differently(answered: &Value, stored: &Value) -> Option<String> {
    let fields = [
        "id",
        "organization_id",
        "session_id",
        "capability",
        "operation",
        "amount_usd",
        "target_url",
        "request_hash",
        "metadata",
        "created_at",
    ];
    for field in fields {
        if answered[field] != stored[field] {
            return Some(format!("{field}: {} vs {}", answered[field], stored[field]));
        }
    }
    let first = |a: &Value| a["status_history"][0].clone();
    (first(answered) != first(stored)).then(|| format!("first status change: {} vs {}", first(answered), first(stored)))
}

/// Every stored change against the events delivered: each version of each attempt once by id
/// (after deduplication, which checks the schema, that duplicates agree, and version order),
/// as the attempt was at that version (whole: the last against retrieve, a create against its
/// acknowledged answer; an earlier version otherwise by its status change), and no event for a
/// change that is not stored.
pub fn check_events(history: &[Op], stored: &BTreeMap<String, Value>, delivered: &[Delivered]) -> Vec<String> {
    let published = match try_deduplicated(delivered) {
        Ok(published) => published,
        Err(problem) => return vec![format!("events: {problem}")],
    };
    let mut violations = Vec::new();
    // The attempt as each acknowledged create answered it: its first version, whole.
    let mut answered: HashMap<String, Value> = HashMap::new();
    for op in history.iter().filter(|op| matches!(op.write, Write::Create)) {
        if let Some((status, body)) = op.final_answer().filter(|(status, _)| (200..300).contains(status)) {
            let Ok(mut attempt) = serde_json::from_str::<Value>(body) else { continue };
            if let (201, Some(id)) = (status, attempt["id"].as_str().map(str::to_owned)) {
                attempt.as_object_mut().map(|fields| fields.remove("status_history"));
                answered.insert(format!("{id}.v1"), attempt);
            }
        }
    }
    let mut expected = std::collections::HashSet::new();
    for (id, attempt) in stored {
        let history = attempt["status_history"].as_array().cloned().unwrap_or_default();
        for (i, change) in history.iter().enumerate() {
            let event_id = format!("{id}.v{}", i + 1);
            let Some(detail) = published.get(&event_id) else {
                violations.push(format!("{event_id}: a stored change without its event"));
                continue;
            };
            let previous = if i == 0 { Value::Null } else { history[i - 1]["status"].clone() };
            let shown = (&detail["attempt"]["status"], &detail["previous_status"], &detail["changed_at"]);
            if shown != (&change["status"], &previous, &change["changed_at"]) {
                violations.push(format!("{event_id}: the event shows {shown:?}, the history {change}"));
            }
            if let Some(first) = answered.get(&event_id).filter(|first| detail["attempt"] != **first) {
                violations
                    .push(format!("{event_id}: the event shows {}, the create answered {first}", detail["attempt"]));
            }
            if i + 1 == history.len() {
                let mut row = attempt.clone();
                row.as_object_mut().map(|fields| fields.remove("status_history"));
                if detail["attempt"] != row {
                    violations.push(format!("{event_id}: the event shows {}, retrieve {row}", detail["attempt"]));
                }
            }
            expected.insert(event_id);
        }
    }
    for id in published.keys().filter(|id| !expected.contains(*id)) {
        violations.push(format!("{id}: an event for a change that is not stored"));
    }
    violations
}
