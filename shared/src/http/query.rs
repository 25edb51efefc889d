//! The path and query parameters: the attempt id, the list and summary queries.

use lambda_http::{Request, RequestExt};

use super::*;
use crate::attempt::Status;
use crate::id::{AttemptId, SessionId, ATTEMPT_ID_FORMAT};
use crate::page::{CreatedRange, Cursor, ListQuery, MAX_LIMIT};
use crate::summary::{SummaryScope, HOUR_MS, MAX_RANGE_HOURS};
use crate::validation::InvalidRequest;

/// The attempt id in the path.
pub fn attempt_id(req: &Request) -> Result<AttemptId, ApiError> {
    let params = req.path_parameters();
    let raw = params.first("id").unwrap_or_default();
    AttemptId::parse(raw).ok_or_else(|| {
        InvalidRequest::invalid("id", format!("Invalid id: `{raw}` is not a payment attempt id ({ATTEMPT_ID_FORMAT})."))
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
                    .ok_or_else(|| invalid(&format!("must be a payment attempt id ({ATTEMPT_ID_FORMAT})")))?;
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
                query.capability = Some(crate::validation::capability_text(value, name)?);
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

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::aws_lambda_events::query_map::QueryMap;
    use lambda_http::http::StatusCode;
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
        assert_eq!((e.status(), e.code.as_str()), (StatusCode::BAD_REQUEST, "parameter_unknown"));
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
