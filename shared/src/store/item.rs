//! Attempts as DynamoDB items and back: one attribute per field, the amount as a DynamoDB
//! number, receipts as the caller's exact JSON text.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::value::RawValue;

use super::keys::{attempt_pk, attempt_sk, session_key};
use super::schema::*;
use super::StoreError;
use crate::attempt::{Attempt, Status, StatusChange, StatusDetails, StatusNote};
use crate::id::{AttemptId, OrganizationId, PaymentAccountId, SessionId};
use crate::idempotency::RequestToken;
use crate::layout::Layout;
use crate::money::{Amount, Currency};
use crate::time::Timestamp;

/// In a status change: its receipt is the attempt's own, stored once on the attempt.
const RECEIPT_IS_CURRENT: &str = "receipt_is_current";

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn put_opt(item: &mut HashMap<String, AttributeValue>, name: &str, value: Option<&str>) {
    if let Some(v) = value {
        item.insert(name.to_owned(), s(v));
    }
}

fn details_map(d: &StatusDetails) -> HashMap<String, AttributeValue> {
    let mut m = HashMap::from([("changed_at".to_owned(), s(d.changed_at.to_string()))]);
    let StatusNote { reason, message, source, code } = &d.note;
    put_opt(&mut m, "reason", reason.as_deref());
    put_opt(&mut m, "message", message.as_deref());
    put_opt(&mut m, "source", source.as_deref());
    put_opt(&mut m, "code", code.as_deref());
    m
}

/// A status change; its receipt is stored once: a receipt that is the attempt's own (the
/// latest one) is marked as such rather than written again.
fn change_item(c: &StatusChange, current_receipt: &RawValue) -> AttributeValue {
    let mut m = details_map(&c.details());
    m.insert("status".to_owned(), s(c.status.as_str()));
    put_opt(&mut m, "previous_status", c.previous_status.map(|p| p.as_str()));
    match c.receipt.as_deref().map(RawValue::get) {
        Some(receipt) if receipt == current_receipt.get() => {
            m.insert(RECEIPT_IS_CURRENT.to_owned(), AttributeValue::Bool(true));
        }
        receipt => put_opt(&mut m, "receipt", receipt),
    }
    put_opt(&mut m, "written_by", c.written_by.as_ref().map(RequestToken::as_str));
    AttributeValue::M(m)
}

/// The attempt's item in its shard, by its organization's layout.
pub(super) fn to_item(a: &Attempt, layout: &Layout) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PARTITION_KEY.to_owned(), s(attempt_pk(&a.organization_id, &a.id, layout))),
        (SORT_KEY.to_owned(), s(attempt_sk(&a.id))),
        ("id".to_owned(), s(a.id.as_str())),
        ("organization_id".to_owned(), s(a.organization_id.as_str())),
        ("capability".to_owned(), s(&a.capability)),
        ("operation".to_owned(), s(&a.operation)),
        // A DynamoDB number holds the exact decimal text.
        ("amount_usd".to_owned(), AttributeValue::N(a.amount_usd.to_string())),
        ("currency".to_owned(), s(a.currency.as_str())),
        ("target_url".to_owned(), s(&a.target_url)),
        ("status".to_owned(), s(a.status.as_str())),
        ("status_details".to_owned(), AttributeValue::M(details_map(&a.status_details))),
        // Kept as JSON text so that the caller's numbers keep every digit.
        ("receipt".to_owned(), s(a.receipt.get())),
        (
            "status_history".to_owned(),
            AttributeValue::L(a.status_history.iter().map(|c| change_item(c, &a.receipt)).collect()),
        ),
        ("created_at".to_owned(), s(a.created_at.to_string())),
        ("updated_at".to_owned(), s(a.updated_at.to_string())),
        ("version".to_owned(), AttributeValue::N(a.version.to_string())),
    ]);
    // No empty map: it costs bytes, and DynamoDB Local's stream writes one without its type.
    if !a.metadata.is_empty() {
        item.insert(
            "metadata".to_owned(),
            AttributeValue::M(a.metadata.iter().map(|(k, v)| (k.clone(), s(v))).collect()),
        );
    }
    if let Some(session) = &a.session_id {
        item.insert(SESSION_PARTITION_KEY.to_owned(), s(session_key(&a.organization_id, session)));
        item.insert("session_id".to_owned(), s(session.as_str()));
    }
    put_opt(&mut item, "payment_account_id", a.payment_account_id.as_ref().map(|p| p.as_str()));
    put_opt(&mut item, "rail", a.rail.as_deref());
    put_opt(&mut item, "request_hash", a.request_hash.as_deref());
    put_opt(&mut item, "error_message", a.error_message.as_deref());
    item
}

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    opt_s(item, name).ok_or_else(|| corrupt(name))
}

pub(super) fn opt_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name).and_then(|v| v.as_s().ok()).map(String::as_str)
}

fn parse_with<T>(item: &Item, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<T, StoreError> {
    parse(get_s(item, name)?).ok_or_else(|| corrupt(name))
}

fn opt_parse<T>(item: &Item, name: &str, parse: impl FnOnce(&str) -> Option<T>) -> Result<Option<T>, StoreError> {
    opt_s(item, name).map(|v| parse(v).ok_or_else(|| corrupt(name))).transpose()
}

pub(super) fn opt_string(item: &Item, name: &str) -> Option<String> {
    opt_s(item, name).map(str::to_owned)
}

fn details_from(item: &Item) -> Result<StatusDetails, StoreError> {
    Ok(StatusDetails {
        changed_at: parse_with(item, "changed_at", Timestamp::parse_rfc3339)?,
        note: StatusNote {
            reason: opt_string(item, "reason"),
            message: opt_string(item, "message"),
            source: opt_string(item, "source"),
            code: opt_string(item, "code"),
        },
    })
}

fn change_from(item: &Item, current_receipt: &RawValue) -> Result<StatusChange, StoreError> {
    let StatusDetails { changed_at, note } = details_from(item)?;
    let receipt = match item.get(RECEIPT_IS_CURRENT) {
        Some(AttributeValue::Bool(true)) => Some(current_receipt.to_owned()),
        _ => opt_parse(item, "receipt", |text| RawValue::from_string(text.to_owned()).ok())?,
    };
    Ok(StatusChange {
        status: parse_with(item, "status", |s| Status::parse(s).ok())?,
        previous_status: opt_parse(item, "previous_status", |s| Status::parse(s).ok())?,
        changed_at,
        note,
        receipt,
        written_by: opt_s(item, "written_by").map(RequestToken::from_stored),
    })
}

pub(super) fn from_item(item: &Item) -> Result<Attempt, StoreError> {
    let details = item.get("status_details").and_then(|v| v.as_m().ok()).ok_or_else(|| corrupt("status_details"))?;
    let history = item.get("status_history").and_then(|v| v.as_l().ok()).map(Vec::as_slice).unwrap_or_default();
    let metadata = item.get("metadata").and_then(|v| v.as_m().ok());
    let amount = item.get("amount_usd").and_then(|v| v.as_n().ok()).ok_or_else(|| corrupt("amount_usd"))?;
    let receipt = RawValue::from_string(get_s(item, "receipt")?.to_owned()).map_err(|_| corrupt("receipt"))?;
    let status_history = history
        .iter()
        .map(|c| c.as_m().map_err(|_| corrupt("status_history")).and_then(|c| change_from(c, &receipt)))
        .collect::<Result<_, _>>()?;
    Ok(Attempt {
        id: parse_with(item, "id", AttemptId::parse)?,
        organization_id: parse_with(item, "organization_id", OrganizationId::parse)?,
        session_id: opt_parse(item, "session_id", SessionId::parse)?,
        payment_account_id: opt_parse(item, "payment_account_id", PaymentAccountId::parse)?,
        capability: get_s(item, "capability")?.to_owned(),
        operation: get_s(item, "operation")?.to_owned(),
        rail: opt_string(item, "rail"),
        amount_usd: Amount::from_str(amount).map_err(|_| corrupt("amount_usd"))?,
        currency: parse_with(item, "currency", Currency::parse)?,
        target_url: get_s(item, "target_url")?.to_owned(),
        request_hash: opt_string(item, "request_hash"),
        status: parse_with(item, "status", |s| Status::parse(s).ok())?,
        status_details: details_from(details)?,
        error_message: opt_string(item, "error_message"),
        receipt,
        metadata: metadata
            .map(|m| {
                m.iter().map(|(k, v)| Ok((k.clone(), v.as_s().map_err(|_| corrupt("metadata"))?.clone()))).collect()
            })
            .transpose()?
            .unwrap_or_else(BTreeMap::new),
        status_history,
        created_at: parse_with(item, "created_at", Timestamp::parse_rfc3339)?,
        updated_at: parse_with(item, "updated_at", Timestamp::parse_rfc3339)?,
        version: item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| corrupt("version"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::NewAttempt;

    #[test]
    fn items_round_trip_every_field() {
        let body = serde_json::json!({
            "session_id": "session_s1", "payment_account_id": "payacct_a1",
            "capability": "paid_search", "operation": "search.query", "rail": "mpp_tempo",
            "amount_usd": 1000000.000001, "currency": "EUR", "target_url": "https://api.example.com/v1/search",
            "request_hash": format!("sha256:{}", "0".repeat(64)), "status": "failed",
            "error_message": "rail.insufficient_funds", "status_details": {"reason": "funds", "source": "rail"},
            "receipt": {"tx": "0xabc", "n": 1}, "metadata": {"k": "v"}
        });
        let org = OrganizationId::parse("org_acme").unwrap();
        let a = NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org, Timestamp::now());
        let sixteen = Layout::default().grown(16, 1).unwrap();
        let item = to_item(&a, &sixteen);
        let shard = u16::from(a.id.spread()) % 16;
        assert_eq!(item["pk"].as_s().unwrap(), &format!("ORG#org_acme#ATT#{shard:03}"));
        assert_eq!(item["sk"].as_s().unwrap(), &format!("ATT#{}", a.id));
        assert_eq!(item["session_pk"].as_s().unwrap(), "ORG#org_acme#SES#session_s1");
        assert_eq!(item["amount_usd"].as_n().unwrap(), "1000000.000001");
        let back = from_item(&item).unwrap();
        let json = |a: &Attempt| serde_json::to_string(&a.view(crate::View::Full)).unwrap();
        assert_eq!(json(&back), json(&a));
    }

    #[test]
    fn each_receipt_is_stored_once() {
        let receipt = format!(r#"{{"tx": "{}"}}"#, "a".repeat(8_000));
        let body = format!(
            r#"{{"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/", "receipt": {receipt}}}"#
        );
        let org = OrganizationId::parse("org_acme").unwrap();
        let created = NewAttempt::from_json(body.as_bytes()).unwrap().into_attempt(org, Timestamp::now());
        let by = RequestToken::new();
        let settle = |receipt: &str| {
            let update = format!(r#"{{"status": "succeeded", "receipt": {receipt}}}"#);
            crate::command::StatusUpdate::from_json(update.as_bytes())
                .unwrap()
                .apply(&created, Timestamp::now(), &by)
                .unwrap()
        };
        let size = |a: &Attempt| format!("{:?}", to_item(a, &Layout::default())).len();
        let settled = settle(&format!(r#"{{"settled": "{}"}}"#, "b".repeat(8_000)));
        for attempt in [&created, &settled] {
            assert!(size(attempt) < 8_000 * attempt.status_history.len() + 2_000, "{} bytes", size(attempt));
            let back = from_item(&to_item(attempt, &Layout::default())).unwrap();
            let json = |a: &Attempt| serde_json::to_string(&a.view(crate::View::Full)).unwrap();
            assert_eq!(json(&back), json(attempt), "every receipt comes back where it was");
        }
    }

    #[test]
    fn attempts_without_session_stay_out_of_the_session_index() {
        let body = serde_json::json!({"capability": "c", "operation": "o", "amount_usd": 1, "target_url": "https://x.example/"});
        let org = OrganizationId::parse("org_acme").unwrap();
        let a = NewAttempt::from_json(body.to_string().as_bytes()).unwrap().into_attempt(org, Timestamp::now());
        assert!(!to_item(&a, &Layout::default()).contains_key(SESSION_PARTITION_KEY));
    }
}
