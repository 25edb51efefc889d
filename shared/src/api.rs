//! HTTP mapping for API Gateway: identity, query and path parsing, body limits, Stripe-style
//! errors, the list envelope and the `Request-Id` header.

use lambda_http::http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::StatusCode;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use std::future::Future;
use tracing::Instrument;

use crate::attempt::{Attempt, InvalidTransition, Status, View};
use crate::budget::Deadline;
use crate::id::{AttemptId, OrganizationId, SessionId};
use crate::idempotency::{self, IdempotencyRecord};
use crate::metrics::Metric;
use crate::page::{CreatedRange, Cursor, ListQuery, Page, MAX_LIMIT};
use crate::settings::Settings;
#[cfg(feature = "dynamodb")]
use crate::store::StoreError;
use crate::summary::{Summary, SummaryScope, HOUR_MS, MAX_RANGE_HOURS};
use crate::validation::InvalidRequest;

pub const LIST_URL: &str = "/v1/payments/attempts";
/// Bodies are small JSON commands; receipts are capped well below this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Seconds a caller should wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// An error as the API shows it: `{"error": {"type", "code", "message", "param"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
    /// The attempt the error is about, when it is another one than asked for.
    pub payment_attempt: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None, payment_attempt: None }
    }

    pub fn invalid_transition(e: InvalidTransition) -> Self {
        ApiError {
            param: Some("status".to_owned()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "invalid_state_transition",
                format!("{e}; only a pending attempt moves, to succeeded, failed or released."),
            )
        }
    }

    pub fn duplicate_request(holder: &AttemptId) -> Self {
        ApiError {
            param: Some("request_hash".to_owned()),
            payment_attempt: Some(holder.to_string()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "duplicate_request",
                format!("This request_hash is already held by payment attempt {holder}, which is pending or succeeded: the call is a replay."),
            )
        }
    }

    pub fn idempotency_mismatch() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                "idempotency_key_reused",
                "Keys for idempotent requests can only be used with the same request they were first used with.",
            )
        }
    }

    pub fn idempotency_key_in_use() -> Self {
        ApiError {
            param: Some(idempotency::HEADER.to_owned()),
            ..Self::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry shortly.",
            )
        }
    }

    pub fn concurrent_update() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "concurrent_update",
            "Another request is writing the same records right now; retry shortly.",
        )
    }

    /// A refusal the same request would get again: kept under its Idempotency-Key and
    /// replayed. A 5xx or a 409 that says "retry" is not final: the retry runs.
    pub fn is_final(&self) -> bool {
        self.status.is_client_error() && !matches!(self.code, "idempotency_key_in_use" | "concurrent_update")
    }

    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "unauthenticated",
            "No valid identity: send a bearer token whose claims name your organization.",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "forbidden",
            "This IAM role is not allowed to write payment attempts.",
        )
    }

    pub fn not_found(id: &str) -> Self {
        ApiError {
            param: Some("id".to_owned()),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "resource_missing",
                format!("No such payment attempt: '{id}'"),
            )
        }
    }

    /// A write that fails this way may or may not have been stored (its answer was lost):
    /// a retry with the same Idempotency-Key settles it without recording anything twice.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "storage_unavailable",
            "Storage is temporarily unavailable. Retry after the Retry-After delay; retry writes with the same Idempotency-Key so that none is recorded twice.",
        )
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "internal_error",
            "An internal error occurred; it has been logged.",
        )
    }
}

impl From<InvalidRequest> for ApiError {
    fn from(e: InvalidRequest) -> Self {
        ApiError { param: e.param, ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", e.code, e.message) }
    }
}

#[cfg(feature = "dynamodb")]
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::DuplicateRequest(holder) => Self::duplicate_request(&holder),
            StoreError::IdempotencyKeyInUse | StoreError::IdempotencyKeyTaken => Self::idempotency_key_in_use(),
            StoreError::VersionConflict | StoreError::Contention => Self::concurrent_update(),
            StoreError::Unavailable(why) => {
                tracing::warn!(error = %why, "storage unavailable");
                Self::unavailable()
            }
            other => {
                tracing::error!(error = %other, "storage failure");
                Self::internal()
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_attempt: Option<&'a str>,
}

/// Who is calling, from the identity API Gateway verified and put in the request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person or dashboard whose JWT names their organization.
    Member(OrganizationId),
    /// An AWS service on the allow-list (IAM auth); it names the organization in the body.
    TrustedWriter { role: String },
}

impl Caller {
    pub fn from_request(req: &Request, settings: &Settings) -> Result<Caller, ApiError> {
        let iam = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()),
            _ => None,
        };
        let Some(iam) = iam else { return organization(req, settings).map(Caller::Member) };
        let caller = iam.user_arn.as_deref().and_then(role_of).ok_or_else(ApiError::unauthenticated)?;
        if settings.trusted_writer_roles.iter().any(|allowed| role_of(allowed).as_ref() == Some(&caller)) {
            Ok(Caller::TrustedWriter { role: caller.to_string() })
        } else {
            tracing::warn!(caller = %caller, "IAM caller not on the trusted writer list");
            Err(ApiError::forbidden())
        }
    }

    /// The organization a write is for: the member's own, or the one a trusted writer names.
    pub fn organization_for(&self, named_in_body: Option<OrganizationId>) -> Result<OrganizationId, ApiError> {
        match (self, named_in_body) {
            (Caller::Member(org), None) => Ok(org.clone()),
            (Caller::Member(_), Some(_)) => Err(InvalidRequest::invalid(
                "organization_id",
                "organization_id comes from your credentials and cannot be set in the body.",
            )
            .into()),
            (Caller::TrustedWriter { .. }, Some(org)) => Ok(org),
            (Caller::TrustedWriter { .. }, None) => Err(InvalidRequest::missing("organization_id").into()),
        }
    }
}

/// An IAM role, as `arn:<partition>:iam::<account>:role/<name>`, from a role ARN (with or
/// without a path) or the assumed-role ARN API Gateway reports for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    partition: String,
    account: String,
    name: String,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "arn:{}:iam::{}:role/{}", self.partition, self.account, self.name)
    }
}

pub fn role_of(arn: &str) -> Option<Role> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let name = match service {
        "iam" => resource.strip_prefix("role/")?.rsplit('/').next()?,
        "sts" => resource.strip_prefix("assumed-role/")?.split('/').next()?,
        _ => return None,
    };
    let valid = !name.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| Role { partition: partition.to_owned(), account: account.to_owned(), name: name.to_owned() })
}

/// The caller's organization, only from the verified JWT in the request context.
pub fn organization(req: &Request, settings: &Settings) -> Result<OrganizationId, ApiError> {
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims)
        }
        _ => None,
    };
    let org = claims.and_then(|c| c.get(&settings.org_claim)).and_then(|v| OrganizationId::parse(v));
    org.ok_or_else(ApiError::unauthenticated)
}

/// API Gateway's request id when there is one, so logs and the header agree.
pub fn request_id(req: &Request) -> String {
    let from_gateway = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    from_gateway
        .or_else(|| req.lambda_context_ref().map(|c| c.request_id.clone()).filter(|id| !id.is_empty()))
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()))
}

/// The attempt id in the path.
pub fn attempt_id(req: &Request) -> Result<AttemptId, ApiError> {
    let params = req.path_parameters();
    let raw = params.first("id").unwrap_or_default();
    AttemptId::parse(raw).ok_or_else(|| {
        InvalidRequest::invalid(
            "id",
            format!("Invalid id: `{raw}` is not a payment attempt id (payatt_ and 32 lowercase hex digits)."),
        )
        .into()
    })
}

/// Parses the list query, refusing unknown and repeated parameters (only `status` repeats).
pub fn list_query(req: &Request) -> Result<ListQuery, ApiError> {
    let params = req.query_string_parameters();
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
    names.sort_unstable();
    for pair in names.windows(2) {
        if pair[0] == pair[1] && pair[0] != "status" {
            return Err(InvalidRequest::duplicate(pair[0]).into());
        }
    }
    names.dedup();
    let mut query = ListQuery::default();
    let mut bounds = TimeBounds::default();
    for name in names {
        let value = params.first(name).unwrap_or_default();
        let invalid = |why: &str| InvalidRequest::invalid(name, format!("Invalid {name}: {why}."));
        match name {
            "session_id" => {
                let session = SessionId::parse(value)
                    .ok_or_else(|| invalid("must be `session_` followed by 1 to 64 letters or digits"))?;
                query.session_id = Some(session);
            }
            "limit" => {
                let limit = value.parse().ok().filter(|l| (1..=MAX_LIMIT).contains(l));
                query.limit = limit.ok_or_else(|| invalid(&format!("must be an integer from 1 to {MAX_LIMIT}")))?;
            }
            "starting_after" | "ending_before" => {
                if query.cursor.is_some() {
                    let both = "starting_after and ending_before cannot be used together.";
                    return Err(InvalidRequest::invalid("ending_before", both).into());
                }
                let id = AttemptId::parse(value)
                    .ok_or_else(|| invalid("must be a payment attempt id (payatt_ and 32 lowercase hex digits)"))?;
                query.cursor =
                    Some(if name == "starting_after" { Cursor::StartingAfter(id) } else { Cursor::EndingBefore(id) });
            }
            "status" => {
                // `status=failed&status=pending` or `status=failed,pending`.
                for text in params.all(name).unwrap_or_default().iter().flat_map(|v| v.split(',')) {
                    let status = Status::parse(text).filter(|s| !s.describes_accounts()).ok_or_else(|| {
                        invalid(&format!("`{text}` is not an attempt status (pending, succeeded, failed, released)"))
                    })?;
                    if !query.statuses.contains(&status) {
                        query.statuses.push(status);
                    }
                }
            }
            "capability" => {
                let ok = (1..=128).contains(&value.len()) && value.bytes().all(crate::validation::capability_char);
                if !ok {
                    return Err(invalid("use letters, digits and `_ . : / -`").into());
                }
                query.capability = Some(value.to_owned());
            }
            "created[gte]" | "created[gt]" | "created[lte]" | "created[lt]" => {
                let nanos = crate::time::parse_instant_nanos(value)
                    .ok_or_else(|| invalid("must be an RFC 3339 time or Unix seconds"))?;
                bounds.set(name, nanos)?;
            }
            other => return Err(InvalidRequest::unknown(other).into()),
        }
    }
    query.created = bounds.range()?;
    Ok(query)
}

/// Parses `GET /v1/payments/attempts/summary`: a session's totals, or the organization's,
/// optionally for attempts created within whole hours (`created[gte]`, `created[lt]`).
pub fn summary_query(req: &Request) -> Result<SummaryScope, ApiError> {
    let params = req.query_string_parameters();
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
        return Err(InvalidRequest::duplicate(pair[0]).into());
    }
    let (mut session, mut from, mut to) = (None, None, None);
    for name in names {
        let value = params.first(name).unwrap_or_default();
        let invalid = |why: &str| InvalidRequest::invalid(name, format!("Invalid {name}: {why}."));
        match name {
            "session_id" => {
                session = Some(
                    SessionId::parse(value)
                        .ok_or_else(|| invalid("must be `session_` followed by 1 to 64 letters or digits"))?,
                )
            }
            "created[gte]" | "created[lt]" => {
                let nanos = crate::time::parse_instant_nanos(value)
                    .ok_or_else(|| invalid("must be an RFC 3339 time or Unix seconds"))?;
                let hour_nanos = i128::from(HOUR_MS) * 1_000_000;
                if nanos.rem_euclid(hour_nanos) != 0 {
                    return Err(invalid(
                        "summaries count whole hours: use a time on the hour, e.g. 2026-05-25T02:00:00Z",
                    )
                    .into());
                }
                // Whole hours from 1970 to the year 9999.
                let hour = i64::try_from(nanos.div_euclid(hour_nanos)).ok().filter(|h| (0..=MAX_HOUR).contains(h));
                let hour = hour.ok_or_else(|| invalid("must be between 1970 and the year 9999"))?;
                if name == "created[gte]" {
                    from = Some(hour)
                } else {
                    to = Some(hour - 1)
                }
            }
            other => return Err(InvalidRequest::unknown(other).into()),
        }
    }
    match (session, from, to) {
        (Some(session), None, None) => Ok(SummaryScope::Session(session)),
        (Some(_), _, _) => Err(InvalidRequest::invalid(
            "created[gte]",
            "A session's summary covers all its attempts: drop created[...] or session_id.",
        )
        .into()),
        (None, None, None) => Ok(SummaryScope::Organization { hours: None }),
        (None, Some(from), Some(to)) if from > to => {
            Err(InvalidRequest::invalid("created[gte]", "created[gte] must be before created[lt].").into())
        }
        (None, Some(from), Some(to)) if to - from >= MAX_RANGE_HOURS => Err(InvalidRequest::invalid(
            "created[gte]",
            format!("A summary covers at most {} days.", MAX_RANGE_HOURS / 24),
        )
        .into()),
        (None, Some(from), Some(to)) => Ok(SummaryScope::Organization { hours: Some((from, to)) }),
        (None, None, Some(_)) => Err(InvalidRequest::missing("created[gte]").into()),
        (None, Some(_), None) => Err(InvalidRequest::missing("created[lt]").into()),
    }
}

/// 9999-12-31T23:00:00Z, in hours since the epoch.
const MAX_HOUR: i64 = 253_402_297_200 / 3600;

pub fn summary_response(scope: &SummaryScope, summary: &Summary) -> Response<Body> {
    #[derive(Serialize)]
    struct Envelope<'a> {
        object: &'static str,
        session_id: Option<&'a SessionId>,
        created: Option<serde_json::Value>,
        #[serde(flatten)]
        summary: &'a Summary,
    }
    let hour = |h: i64| crate::time::Timestamp::from_unix_millis(h * HOUR_MS).map(|t| t.to_string());
    let (session_id, created) = match scope {
        SummaryScope::Session(session) => (Some(session), None),
        SummaryScope::Organization { hours } => {
            (None, hours.map(|(from, to)| serde_json::json!({ "gte": hour(from), "lt": hour(to + 1) })))
        }
    };
    json_response(StatusCode::OK, &Envelope { object: "payment_attempt_summary", session_id, created, summary })
}

/// The `created[...]` parameters, as given.
#[derive(Default)]
struct TimeBounds {
    lower: Option<(&'static str, i128)>,
    upper: Option<(&'static str, i128)>,
}

impl TimeBounds {
    fn set(&mut self, name: &str, nanos: i128) -> Result<(), InvalidRequest> {
        let (slot, param) = match name {
            "created[gte]" => (&mut self.lower, "created[gte]"),
            "created[gt]" => (&mut self.lower, "created[gt]"),
            "created[lte]" => (&mut self.upper, "created[lte]"),
            _ => (&mut self.upper, "created[lt]"),
        };
        if let Some((other, _)) = slot {
            return Err(InvalidRequest::invalid(param, format!("Use one of {other} and {param}, not both.")));
        }
        *slot = Some((param, nanos));
        Ok(())
    }

    /// Inclusive millisecond bounds: ids and `created_at` carry whole milliseconds.
    fn range(&self) -> Result<CreatedRange, InvalidRequest> {
        const MS: i128 = 1_000_000;
        let ceil = |n: i128| n.div_euclid(MS) + i128::from(n.rem_euclid(MS) != 0);
        let from = self.lower.map(|(p, n)| if p == "created[gt]" { n.div_euclid(MS) + 1 } else { ceil(n) });
        let to = self.upper.map(|(p, n)| if p == "created[lt]" { ceil(n) - 1 } else { n.div_euclid(MS) });
        if let (Some((param, _)), Some((upper, _)), Some(f), Some(t)) = (self.lower, self.upper, from, to) {
            if f > t {
                return Err(InvalidRequest::invalid(
                    param,
                    format!("{param} must be before {upper}: no time is in between."),
                ));
            }
        }
        let clamp = |ms: i128| i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX });
        Ok(CreatedRange { from_ms: from.map(clamp), to_ms: to.map(clamp) })
    }
}

/// Routes that take no query parameters refuse any, by name.
pub fn no_query(req: &Request) -> Result<(), ApiError> {
    let params = req.query_string_parameters();
    let mut names: Vec<&str> = params.iter().map(|(k, _)| k).collect();
    names.sort_unstable();
    match names.first() {
        Some(name) => Err(InvalidRequest::unknown(name).into()),
        None => Ok(()),
    }
}

/// The JSON body of a write, within size and media-type limits.
pub fn json_body(req: &Request) -> Result<&[u8], ApiError> {
    let bytes: &[u8] = req.body().as_ref();
    let content_type = req.headers().get(CONTENT_TYPE);
    if content_type.is_some() || !bytes.is_empty() {
        let content_type = content_type.and_then(|c| c.to_str().ok()).unwrap_or("");
        let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if media != "application/json" {
            return Err(ApiError {
                param: None,
                ..ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "invalid_request_error",
                    "unsupported_media_type",
                    "Send the body as JSON with Content-Type: application/json.",
                )
            });
        }
    }
    if bytes.len() > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "body_too_large",
            format!("The request body is larger than {MAX_BODY_BYTES} bytes."),
        ));
    }
    Ok(bytes)
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    match serde_json::to_string(body) {
        Ok(text) => {
            let mut response = Response::new(Body::Text(text));
            *response.status_mut() = status;
            response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "response serialization failed");
            error_response(&ApiError::internal())
        }
    }
}

pub fn attempt_response(status: StatusCode, attempt: &Attempt) -> Response<Body> {
    json_response(status, &attempt.view(View::Full))
}

/// The `Idempotency-Key` header, if the caller sent one.
pub fn idempotency_key(req: &Request) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(idempotency::HEADER) else { return Ok(None) };
    Ok(Some(idempotency::parse_key(value.as_bytes())?))
}

/// The response first given to the request `fingerprint` names, or an error if the key was
/// first used with another request.
pub fn replay(record: &IdempotencyRecord, fingerprint: &str) -> Result<Response<Body>, ApiError> {
    if record.fingerprint != fingerprint {
        return Err(ApiError::idempotency_mismatch());
    }
    let mut response = recorded_response(record);
    response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Metric::IdempotentReplay.emit();
    Ok(response)
}

/// The response a key's record keeps, byte for byte.
pub fn recorded_response(record: &IdempotencyRecord) -> Response<Body> {
    let mut response = Response::new(Body::Text(record.body.clone()));
    *response.status_mut() = StatusCode::from_u16(record.status).unwrap_or(StatusCode::OK);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// The request's time budget, from the invocation's deadline ([`Deadline`]).
pub fn deadline(req: &Request) -> Deadline {
    Deadline::for_invocation(req.lambda_context_ref().map(|c| c.deadline))
}

/// The text of a response built here (always `Body::Text`).
pub fn body_text(response: &Response<Body>) -> &str {
    match response.body() {
        Body::Text(text) => text,
        _ => "",
    }
}

/// Stripe's list envelope around seed 000's objects. A filtered page that stopped at the read
/// bound before filling also says where to go on, in `next_page`.
pub fn list_response(page: &Page) -> Response<Body> {
    #[derive(Serialize)]
    struct Envelope<T: Serialize> {
        object: &'static str,
        url: &'static str,
        has_more: bool,
        data: Vec<T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_page: Option<serde_json::Value>,
    }
    let next_page = page.resume.as_ref().map(|cursor| match cursor {
        Cursor::StartingAfter(id) => serde_json::json!({ "starting_after": id }),
        Cursor::EndingBefore(id) => serde_json::json!({ "ending_before": id }),
    });
    let data = page.attempts.iter().map(|a| a.view(View::Row)).collect();
    json_response(StatusCode::OK, &Envelope { object: "list", url: LIST_URL, has_more: page.has_more, data, next_page })
}

pub fn error_response(error: &ApiError) -> Response<Body> {
    let body = ErrorBody {
        error: ErrorFields {
            kind: error.kind,
            code: error.code,
            message: &error.message,
            param: error.param.as_deref(),
            payment_attempt: error.payment_attempt.as_deref(),
        },
    };
    let text = serde_json::to_string(&body).unwrap_or_else(|_| {
        r#"{"error":{"type":"api_error","code":"internal_error","message":"An internal error occurred."}}"#.to_owned()
    });
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = error.status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if error.status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    response
}

/// Runs a handler's work inside a span naming the request, and finishes its response: the
/// error body if it failed, and the `Request-Id` header always.
pub async fn serve(req: &Request, work: impl Future<Output = Result<Response<Body>, ApiError>>) -> Response<Body> {
    let request_id = request_id(req);
    let span = tracing::info_span!("request", request_id = %request_id);
    let result = work.instrument(span.clone()).await;
    span.in_scope(|| respond(&request_id, result))
}

fn respond(request_id: &str, result: Result<Response<Body>, ApiError>) -> Response<Body> {
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            Metric::ErrorAnswer { status: error.status.as_u16(), code: error.code }.emit();
            if error.status.is_server_error() {
                tracing::warn!(status = error.status.as_u16(), code = error.code, "request failed");
            } else {
                tracing::info!(
                    status = error.status.as_u16(),
                    code = error.code,
                    param = error.param.as_deref(),
                    "request refused"
                );
            }
            error_response(&error)
        }
    };
    if let Ok(value) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use std::collections::HashMap;

    fn query(pairs: &[(&str, &str)]) -> Result<ListQuery, ApiError> {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in pairs {
            map.entry(k.to_string()).or_default().push(v.to_string());
        }
        list_query(&Request::default().with_query_string_parameters(QueryMap::from(map)))
    }

    fn param(result: Result<ListQuery, ApiError>) -> Option<String> {
        result.expect_err("should be refused").param
    }

    const ID: &str = "payatt_01933b5a000070008000000000000001";

    #[test]
    fn list_query_defaults_and_bounds() {
        assert_eq!(query(&[]).unwrap(), ListQuery::default());
        assert_eq!(query(&[("limit", "1")]).unwrap().limit, 1);
        assert_eq!(query(&[("limit", "100")]).unwrap().limit, 100);
        for bad in ["0", "101", "-1", "ten", "", "1.5", "99999999999"] {
            assert_eq!(param(query(&[("limit", bad)])).as_deref(), Some("limit"), "{bad:?}");
        }
    }

    #[test]
    fn list_query_cursors_and_session() {
        let q = query(&[("starting_after", ID), ("session_id", "session_s1")]).unwrap();
        assert_eq!(q.cursor, Some(Cursor::StartingAfter(AttemptId::parse(ID).unwrap())));
        assert_eq!(q.session_id.map(|s| s.to_string()).as_deref(), Some("session_s1"));
        let q = query(&[("ending_before", ID)]).unwrap();
        assert_eq!(q.cursor, Some(Cursor::EndingBefore(AttemptId::parse(ID).unwrap())));
        assert_eq!(param(query(&[("starting_after", ID), ("ending_before", ID)])).as_deref(), Some("ending_before"));
        assert_eq!(param(query(&[("starting_after", "payatt_x")])).as_deref(), Some("starting_after"));
        assert_eq!(param(query(&[("session_id", "org_acme")])).as_deref(), Some("session_id"));
    }

    #[test]
    fn list_query_refuses_unknown_and_repeated_parameters() {
        assert_eq!(param(query(&[("organization_id", "org_b")])).as_deref(), Some("organization_id"));
        assert_eq!(param(query(&[("limit", "1"), ("limit", "2")])).as_deref(), Some("limit"));
        let e = query(&[("expand", "x")]).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::BAD_REQUEST, "parameter_unknown"));
    }

    #[test]
    fn no_request_context_means_no_identity() {
        let settings = Settings::new("t");
        let e = organization(&Request::default(), &settings).unwrap_err();
        assert_eq!((e.status, e.code), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    }

    #[test]
    fn errors_render_stripe_style_with_retry_after_on_503() {
        let r = respond("req_1", Err(ApiError::unavailable()));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers()["retry-after"], "1");
        assert_eq!(r.headers()["request-id"], "req_1");
        let body: serde_json::Value = match r.body() {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(body["error"]["type"], "api_error");
        assert_eq!(body["error"]["code"], "storage_unavailable");
        let r = respond("req_2", Err(InvalidRequest::invalid("limit", "Invalid limit.").into()));
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert!(r.headers().get("retry-after").is_none());
    }

    #[test]
    fn roles_from_role_and_assumed_role_arns() {
        let role = role_of("arn:aws:iam::123456789012:role/payments-writer").unwrap();
        assert_eq!(role.to_string(), "arn:aws:iam::123456789012:role/payments-writer");
        assert_eq!(role_of("arn:aws:sts::123456789012:assumed-role/payments-writer/session-1"), Some(role.clone()));
        assert_eq!(role_of("arn:aws:iam::123456789012:role/service/payments-writer"), Some(role.clone()));
        assert_ne!(role_of("arn:aws:iam::999999999999:role/payments-writer"), Some(role.clone()));
        assert_ne!(role_of("arn:aws-cn:iam::123456789012:role/payments-writer"), Some(role));
        for bad in [
            "",
            "payments-writer",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::1234:role/x",
            "arn:aws:s3:::bucket",
        ] {
            assert_eq!(role_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn members_write_for_their_organization_trusted_writers_name_it() {
        let org = OrganizationId::parse("org_acme").unwrap();
        let other = OrganizationId::parse("org_other").unwrap();
        let member = Caller::Member(org.clone());
        assert_eq!(member.organization_for(None), Ok(org.clone()));
        assert_eq!(member.organization_for(Some(other.clone())).unwrap_err().param.as_deref(), Some("organization_id"));
        let writer = Caller::TrustedWriter { role: "r".to_owned() };
        assert_eq!(writer.organization_for(Some(other.clone())), Ok(other));
        let missing = writer.organization_for(None).unwrap_err();
        assert_eq!((missing.code, missing.param.as_deref()), ("parameter_missing", Some("organization_id")));
    }

    #[test]
    fn list_filters() {
        let q = query(&[("status", "failed,pending"), ("status", "failed"), ("capability", "paid_search")]).unwrap();
        assert_eq!(q.statuses, vec![Status::Failed, Status::Pending]);
        assert_eq!(q.capability.as_deref(), Some("paid_search"));
        assert_eq!(param(query(&[("status", "active")])).as_deref(), Some("status"));
        assert_eq!(param(query(&[("status", "done")])).as_deref(), Some("status"));
        assert_eq!(param(query(&[("capability", "paid search")])).as_deref(), Some("capability"));
        assert_eq!(param(query(&[("capability", "x"), ("capability", "y")])).as_deref(), Some("capability"));
    }

    #[test]
    fn created_bounds_become_inclusive_milliseconds() {
        let range = |pairs: &[(&str, &str)]| query(pairs).unwrap().created;
        let t = 1_779_704_040_000; // 2026-05-25T10:14:00Z
        assert_eq!(range(&[("created[gte]", "1779704040")]), CreatedRange { from_ms: Some(t), to_ms: None });
        assert_eq!(range(&[("created[gt]", "2026-05-25T10:14:00Z")]).from_ms, Some(t + 1));
        assert_eq!(range(&[("created[gte]", "2026-05-25T10:14:00.0005Z")]).from_ms, Some(t + 1));
        assert_eq!(range(&[("created[lte]", "2026-05-25T10:14:00.0005Z")]).to_ms, Some(t));
        assert_eq!(range(&[("created[lt]", "2026-05-25T12:14:00+02:00")]).to_ms, Some(t - 1));
        assert_eq!(
            range(&[("created[gte]", "1779704040"), ("created[lte]", "1779704040")]),
            CreatedRange { from_ms: Some(t), to_ms: Some(t) }
        );
        assert_eq!(
            param(query(&[("created[gte]", "1779704041"), ("created[lt]", "1779704040")])).as_deref(),
            Some("created[gte]")
        );
        assert_eq!(
            param(query(&[("created[gt]", "1779704040"), ("created[lt]", "1779704040")])).as_deref(),
            Some("created[gt]")
        );
        assert_eq!(
            param(query(&[("created[gt]", "1"), ("created[gte]", "1")]))
                .as_deref()
                .map(|p| p.starts_with("created[gt")),
            Some(true)
        );
        assert_eq!(param(query(&[("created[lt]", "yesterday")])).as_deref(), Some("created[lt]"));
        assert_eq!(param(query(&[("created", "1")])).as_deref(), Some("created"));
    }
}
