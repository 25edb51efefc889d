//! Commands that write attempts, parsed from the JSON every writer sends (HTTP body today;
//! the same text from SQS or a direct invoke).

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use crate::attempt::{Attempt, InvalidTransition, NotAStatus, Status, StatusChange, StatusNote, StatusTransition};
use crate::id::{AttemptId, Id, OrganizationId, PaymentAccountId, SessionId};
use crate::idempotency::RequestToken;
use crate::money::{Amount, AmountError, Currency};
use crate::time::Timestamp;
use crate::validation::{self as v, InvalidRequest, JsonFields, Result};

/// A validated request to record a new attempt.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    /// Only trusted writers (IAM, SQS, direct invoke) may name the organization in the body.
    pub organization_id: Option<OrganizationId>,
    pub session_id: Option<SessionId>,
    pub payment_account_id: Option<PaymentAccountId>,
    pub capability: String,
    pub operation: String,
    pub rail: Option<String>,
    pub amount_usd: Amount,
    pub currency: Currency,
    pub target_url: String,
    pub request_hash: Option<String>,
    pub status: Status,
    pub status_note: StatusNote,
    pub error_message: Option<String>,
    pub receipt: Box<RawValue>,
    pub metadata: BTreeMap<String, String>,
}

impl NewAttempt {
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let mut f = JsonFields::parse(body)?;
        let organization_id = prefixed(f.take("organization_id"), "organization_id")?;
        let session_id = prefixed(f.take("session_id"), "session_id")?;
        let payment_account_id = prefixed(f.take("payment_account_id"), "payment_account_id")?;
        let capability = required(&mut f, "capability", v::capability)?;
        let operation = required(&mut f, "operation", v::capability)?;
        let rail = optional(f.take("rail"), "rail", |raw, p| {
            v::token(raw, p, 64, v::rail_char, "use lowercase letters, digits and `_`")
        })?;
        let amount_usd = required(&mut f, "amount_usd", amount)?;
        let currency = optional(f.take("currency"), "currency", |raw, p| {
            let code = v::string(raw, p, 3).ok().and_then(|c| Currency::parse(&c));
            code.ok_or_else(|| {
                InvalidRequest::invalid(p, format!("Invalid {p}: must be an ISO 4217 code such as `USD`."))
            })
        })?
        .unwrap_or(Currency::USD);
        let target_url = required(&mut f, "target_url", v::target_url)?;
        let request_hash = optional(f.take("request_hash"), "request_hash", v::request_hash)?;
        let status = optional(f.take("status"), "status", initial_status)?.unwrap_or(Status::Pending);
        let error_message = v::optional_string(f.take("error_message"), "error_message", 1000)?;
        let status_note = status_note(f.take("status_details"), "status_details")?;
        let receipt = v::receipt(f.take("receipt"), "receipt")?;
        let metadata = v::metadata(f.take("metadata"), "metadata")?;
        f.reject_unknown(None)?;
        check_error_message(status, &error_message)?;
        Ok(NewAttempt {
            organization_id,
            session_id,
            payment_account_id,
            capability,
            operation,
            rail,
            amount_usd,
            currency,
            target_url,
            request_hash,
            status,
            status_note,
            error_message,
            receipt,
            metadata,
        })
    }

    /// The attempt as first recorded, created now by `organization`.
    pub fn into_attempt(self, organization: OrganizationId, now: Timestamp) -> Attempt {
        // A create is recognised by its attempt's id, which no other request writes.
        let change = StatusChange {
            status: self.status,
            previous_status: None,
            changed_at: now,
            note: self.status_note,
            receipt: Some(self.receipt.clone()),
            written_by: None,
        };
        Attempt {
            id: AttemptId::new_at(now),
            organization_id: organization,
            session_id: self.session_id,
            payment_account_id: self.payment_account_id,
            capability: self.capability,
            operation: self.operation,
            rail: self.rail,
            amount_usd: self.amount_usd,
            currency: self.currency,
            target_url: self.target_url,
            request_hash: self.request_hash,
            status: self.status,
            status_details: change.details(),
            error_message: self.error_message,
            receipt: self.receipt,
            metadata: self.metadata,
            status_history: vec![change],
            created_at: now,
            updated_at: now,
            version: 1,
        }
    }
}

/// A validated request to move an attempt along its lifecycle.
#[derive(Debug, Clone)]
pub struct StatusUpdate {
    /// Only trusted writers (IAM, SQS, direct invoke) may name the organization in the body.
    pub organization_id: Option<OrganizationId>,
    pub status: Status,
    pub status_note: StatusNote,
    pub error_message: Option<String>,
    /// Replaces the receipt when given.
    pub receipt: Option<Box<RawValue>>,
}

impl StatusUpdate {
    pub fn from_json(body: &[u8]) -> Result<Self> {
        let mut f = JsonFields::parse(body)?;
        let organization_id = prefixed(f.take("organization_id"), "organization_id")?;
        let status = required(&mut f, "status", parse_status)?;
        let error_message = v::optional_string(f.take("error_message"), "error_message", 1000)?;
        let status_note = status_note(f.take("status_details"), "status_details")?;
        // Absent or null: the receipt stays as it is (a settlement never erases evidence).
        let receipt = match f.take("receipt").filter(|raw| !v::is_null(raw)) {
            Some(raw) => Some(v::receipt(Some(raw), "receipt")?),
            None => None,
        };
        f.reject_unknown(None)?;
        check_error_message(status, &error_message)?;
        Ok(StatusUpdate { organization_id, status, status_note, error_message, receipt })
    }

    /// The attempt after this update by the request `by`, its history one entry longer; only
    /// along the lifecycle.
    pub fn apply(
        self,
        attempt: &Attempt,
        now: Timestamp,
        by: &RequestToken,
    ) -> std::result::Result<Attempt, InvalidTransition> {
        let transition = StatusTransition::new(attempt.status, self.status)?;
        let change = StatusChange {
            status: transition.to,
            previous_status: Some(transition.from),
            changed_at: now,
            note: self.status_note.clone(),
            receipt: self.receipt.clone(),
            written_by: Some(by.clone()),
        };
        let mut next = attempt.clone();
        next.status = transition.to;
        next.status_details = change.details();
        next.status_history.push(change);
        next.error_message = self.error_message;
        if let Some(receipt) = self.receipt {
            next.receipt = receipt;
        }
        next.updated_at = now;
        next.version = attempt.version + 1;
        Ok(next)
    }
}

fn required<T>(f: &mut JsonFields, param: &str, parse: impl FnOnce(&RawValue, &str) -> Result<T>) -> Result<T> {
    match f.take(param) {
        Some(raw) if !v::is_null(&raw) => parse(&raw, param),
        _ => Err(InvalidRequest::missing(param)),
    }
}

fn optional<T>(
    raw: Option<Box<RawValue>>,
    param: &str,
    parse: impl FnOnce(&RawValue, &str) -> Result<T>,
) -> Result<Option<T>> {
    match raw {
        Some(raw) if !v::is_null(&raw) => parse(&raw, param).map(Some),
        _ => Ok(None),
    }
}

fn prefixed<T: Id>(raw: Option<Box<RawValue>>, param: &str) -> Result<Option<T>> {
    optional(raw, param, |raw, p| {
        let text: Option<String> = serde_json::from_str(raw.get()).ok();
        text.as_deref()
            .and_then(T::parse)
            .ok_or_else(|| InvalidRequest::invalid(p, format!("Invalid {p}: must be {}.", T::FORMAT)))
    })
}

fn amount(raw: &RawValue, param: &str) -> Result<Amount> {
    Amount::parse_json_number(raw.get()).map_err(|e| {
        let why = match e {
            AmountError::NotANumber => "must be a number (a JSON number, not a string)".to_owned(),
            other => other.to_string(),
        };
        InvalidRequest::invalid(param, format!("Invalid {param}: {why}."))
    })
}

pub(crate) fn parse_status(raw: &RawValue, param: &str) -> Result<Status> {
    let status = match serde_json::from_str::<String>(raw.get()) {
        Ok(text) => Status::parse(&text),
        Err(_) => Err(NotAStatus::NotText),
    };
    status.map_err(|why| InvalidRequest::invalid(param, format!("Invalid {param}: {why}.")))
}

fn initial_status(raw: &RawValue, param: &str) -> Result<Status> {
    let status = parse_status(raw, param)?;
    if !status.is_initial() {
        return Err(InvalidRequest::invalid(
            param,
            format!("Invalid {param}: an attempt is created pending, succeeded or failed; `{status}` is reached only from pending."),
        ));
    }
    Ok(status)
}

/// `error_message` says why an attempt failed, so it belongs to failed attempts only.
pub(crate) fn check_error_message(status: Status, error_message: &Option<String>) -> Result<()> {
    match (status, error_message) {
        (Status::Failed, None) => Err(InvalidRequest::missing("error_message")),
        (Status::Failed, Some(_)) | (_, None) => Ok(()),
        (other, Some(_)) => Err(InvalidRequest::invalid(
            "error_message",
            format!("Invalid error_message: only a failed attempt has one, and this one is {other}."),
        )),
    }
}

pub(crate) fn status_note(raw: Option<Box<RawValue>>, param: &str) -> Result<StatusNote> {
    let Some(raw) = raw.filter(|r| !v::is_null(r)) else {
        return Ok(StatusNote::default());
    };
    if !raw.get().trim_start().starts_with('{') {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: must be an object.")));
    }
    let mut f = JsonFields::parse(raw.get().as_bytes())
        .map_err(|e| InvalidRequest { param: Some(format!("{param}[{}]", e.param.unwrap_or_default())), ..e })?;
    let mut field = |name: &str, max| v::optional_string(f.take(name), &format!("{param}[{name}]"), max);
    let note = StatusNote {
        reason: field("reason", 100)?,
        message: field("message", 500)?,
        source: field("source", 100)?,
        code: field("code", 100)?,
    };
    f.reject_unknown(Some(param))?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn body() -> Value {
        json!({
            "session_id": "session_01933b5a000070008000000000000001",
            "payment_account_id": "payacct_01933b5a000070008000000000000001",
            "capability": "paid_search",
            "operation": "search.query",
            "rail": "mpp_tempo",
            "amount_usd": 0.014,
            "currency": "USD",
            "target_url": "https://api.example.com/v1/search",
            "request_hash": format!("sha256:{}", "9f".repeat(32)),
            "receipt": {"tx": "0xabc"},
            "metadata": {"order": "42"}
        })
    }

    fn parse(v: &Value) -> Result<NewAttempt> {
        NewAttempt::from_json(v.to_string().as_bytes())
    }

    fn with(field: &str, value: Value) -> Value {
        let mut b = body();
        b[field] = value;
        b
    }

    fn without(field: &str) -> Value {
        let mut b = body();
        b.as_object_mut().unwrap().remove(field);
        b
    }

    fn rejected(v: &Value) -> (String, &'static str) {
        let e = parse(v).expect_err("should be rejected");
        (e.param.unwrap_or_default(), e.code)
    }

    #[test]
    fn a_full_body_becomes_a_pending_attempt() {
        let cmd = parse(&body()).unwrap();
        assert_eq!(cmd.status, Status::Pending);
        assert_eq!(cmd.amount_usd.to_string(), "0.014");
        let now = Timestamp::now();
        let org = OrganizationId::parse("org_acme").unwrap();
        let attempt = cmd.into_attempt(org, now);
        assert_eq!(attempt.id.timestamp(), Some(now));
        assert_eq!(attempt.status_history.len(), 1);
        let shown = serde_json::to_value(attempt.view(crate::View::Full)).unwrap();
        assert_eq!(shown["object"], "payment_attempt");
        assert_eq!(shown["organization_id"], "org_acme");
        assert_eq!(shown["status_history"][0]["status"], "pending");
        assert_eq!(shown["status_history"][0]["previous_status"], Value::Null);
        assert_eq!(shown["receipt"], json!({"tx": "0xabc"}));
        let row = serde_json::to_value(attempt.view(crate::View::Row)).unwrap();
        assert!(row.get("status_history").is_none());
    }

    #[test]
    fn minimal_body_takes_defaults() {
        let cmd = parse(&json!({
            "capability": "paid_search", "operation": "search.query",
            "amount_usd": 0, "target_url": "https://api.example.com/"
        }))
        .unwrap();
        assert_eq!((cmd.currency, cmd.status, cmd.session_id, cmd.rail), (Currency::USD, Status::Pending, None, None));
        assert_eq!(cmd.receipt.get(), "{}");
    }

    #[test]
    fn each_required_field_is_named_when_missing() {
        for field in ["capability", "operation", "amount_usd", "target_url"] {
            assert_eq!(rejected(&without(field)), (field.to_owned(), "parameter_missing"));
            assert_eq!(rejected(&with(field, Value::Null)), (field.to_owned(), "parameter_missing"));
        }
    }

    #[test]
    fn each_field_is_validated() {
        let cases = [
            ("session_id", json!("sess_1")),
            ("session_id", json!("session_a#b")),
            ("session_id", json!(42)),
            ("payment_account_id", json!("acct_1")),
            ("capability", json!("")),
            ("capability", json!("paid search")),
            ("capability", json!(1)),
            ("operation", json!(["search"])),
            ("rail", json!("MPP")),
            ("amount_usd", json!("0.014")),
            ("amount_usd", json!(-1)),
            ("amount_usd", json!(0.0000001)),
            ("amount_usd", json!(1e13)),
            ("amount_usd", json!(true)),
            ("currency", json!("XYZ")),
            ("currency", json!("dollars")),
            ("currency", json!("usd")),
            ("target_url", json!("/relative")),
            ("target_url", json!("ftp://example.com")),
            ("request_hash", json!("sha256:xyz")),
            ("status", json!("active")),
            ("status", json!("disabled")),
            ("status", json!("released")),
            ("status", json!("done")),
            ("status", json!(1)),
            ("receipt", json!("0xabc")),
            ("receipt", json!([1])),
            ("metadata", json!({"a": 1})),
            ("metadata", json!("x")),
            ("error_message", json!("no failure")),
            ("status_details", json!("x")),
        ];
        for (field, value) in cases {
            let (param, code) = rejected(&with(field, value.clone()));
            assert!(param.starts_with(field), "{field}={value}: param {param}");
            assert_eq!(code, "parameter_invalid", "{field}={value}");
        }
    }

    #[test]
    fn account_statuses_say_why() {
        let e = parse(&with("status", json!("active"))).unwrap_err();
        assert!(e.message.contains("payment accounts"), "{}", e.message);
    }

    #[test]
    fn unknown_and_server_owned_fields_are_refused() {
        for field in ["id", "object", "created_at", "updated_at", "status_history", "amount", "Capability"] {
            assert_eq!(rejected(&with(field, json!("x"))), (field.to_owned(), "parameter_unknown"));
        }
        assert_eq!(
            rejected(&with("status_details", json!({"reason": "x", "changed_at": "now"}))),
            ("status_details[changed_at]".to_owned(), "parameter_unknown")
        );
    }

    #[test]
    fn failed_attempts_need_an_error_message() {
        assert_eq!(rejected(&with("status", json!("failed"))), ("error_message".to_owned(), "parameter_missing"));
        let mut b = with("status", json!("failed"));
        b["error_message"] = json!("rail.insufficient_funds: settled balance below minimum");
        b["status_details"] = json!({"reason": "insufficient_funds", "source": "rail"});
        let cmd = parse(&b).unwrap();
        assert_eq!(cmd.status, Status::Failed);
        assert_eq!(cmd.status_note.reason.as_deref(), Some("insufficient_funds"));
    }

    #[test]
    fn organization_is_read_for_trusted_writers_only_to_be_checked() {
        let cmd = parse(&with("organization_id", json!("org_acme"))).unwrap();
        assert_eq!(cmd.organization_id.map(|o| o.to_string()).as_deref(), Some("org_acme"));
        assert_eq!(rejected(&with("organization_id", json!("org_a#b"))).0, "organization_id");
    }

    #[test]
    fn amounts_keep_their_exact_digits() {
        let text = body().to_string().replace("0.014", "1000000.000001");
        let cmd = NewAttempt::from_json(text.as_bytes()).unwrap();
        assert_eq!(cmd.amount_usd.to_string(), "1000000.000001");
        let text = body().to_string().replace("0.014", "0.0140000000000000001");
        assert_eq!(NewAttempt::from_json(text.as_bytes()).unwrap_err().param.as_deref(), Some("amount_usd"));
    }

    fn update(v: Value) -> Result<StatusUpdate> {
        StatusUpdate::from_json(v.to_string().as_bytes())
    }

    #[test]
    fn updates_follow_the_lifecycle_and_grow_the_history() {
        let now = Timestamp::now();
        let pending = parse(&body()).unwrap().into_attempt(OrganizationId::parse("org_acme").unwrap(), now);
        let later = Timestamp::parse_rfc3339("2100-01-01T00:00:00Z").unwrap();
        let by = RequestToken::new();
        let settled = update(json!({"status": "succeeded", "receipt": {"tx": "0xdef"},
            "status_details": {"reason": "settled", "source": "rail", "code": "ok"}}))
        .unwrap()
        .apply(&pending, later, &by)
        .unwrap();
        assert!(settled.changed_by(&by) && !pending.changed_by(&by), "the change names its request");
        assert_eq!((settled.status, settled.version, settled.updated_at), (Status::Succeeded, 2, later));
        assert_eq!(settled.created_at, pending.created_at);
        assert_eq!(settled.receipt.get(), r#"{"tx":"0xdef"}"#);
        assert_eq!(settled.status_history.len(), 2);
        let last = &settled.status_history[1];
        assert_eq!(
            (last.status, last.previous_status, last.note.code.as_deref()),
            (Status::Succeeded, Some(Status::Pending), Some("ok"))
        );
        assert_eq!(settled.status_details, last.details());
        let again = update(json!({"status": "failed", "error_message": "late"})).unwrap().apply(&settled, later, &by);
        assert_eq!(again.unwrap_err(), InvalidTransition { from: Status::Succeeded, to: Status::Failed });
        let to_pending = update(json!({"status": "pending"})).unwrap().apply(&pending, later, &by);
        assert!(to_pending.is_err());
        let released =
            update(json!({"status": "released", "receipt": null})).unwrap().apply(&pending, later, &by).unwrap();
        assert_eq!(released.receipt.get(), pending.receipt.get(), "a null receipt keeps the one recorded");
    }

    #[test]
    fn updates_are_validated() {
        let param = |v: Value| update(v).unwrap_err().param.unwrap_or_default();
        assert_eq!(param(json!({})), "status");
        assert_eq!(param(json!({"status": "active"})), "status");
        assert_eq!(param(json!({"status": "failed"})), "error_message");
        assert_eq!(param(json!({"status": "released", "error_message": "x"})), "error_message");
        assert_eq!(param(json!({"status": "released", "amount_usd": 1})), "amount_usd");
        assert_eq!(param(json!({"status": "released", "receipt": [1]})), "receipt");
        assert_eq!(param(json!({"status": "released", "status_details": {"at": 1}})), "status_details[at]");
    }
}
