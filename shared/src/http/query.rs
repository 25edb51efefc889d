//! The path and query parameters: the attempt id, the list and summary queries.

use lambda_http::{Request, RequestExt};

use super::*;
use crate::attempt::Status;
use crate::id::{AttemptId, Id, SessionId};
use crate::page::{CreatedRange, Cursor, ListQuery, MAX_LIMIT};
use crate::summary::{SummaryScope, HOUR_MS, MAX_RANGE_HOURS};
use crate::validation::InvalidRequest;

/// The attempt id in the path.
pub fn attempt_id(req: &Request) -> Result<AttemptId, ApiError> {
    let params = req.path_parameters();
    let raw = params.first("id").unwrap_or_default();
    AttemptId::parse(raw).ok_or_else(|| {
        InvalidRequest::invalid(
            "id",
            format!(
                "Invalid id: `{}` is not a payment attempt id ({}).",
                crate::validation::echo(raw),
                AttemptId::FORMAT
            ),
        )
        .into()
    })
}

/// A request's query parameters, read the same way for every route: a name given twice is
/// refused unless it may repeat, an unknown name is refused by the route, and each value's
/// error names its parameter.
struct QueryParams {
    map: lambda_http::aws_lambda_events::query_map::QueryMap,
    /// Each name once, sorted.
    names: Vec<String>,
}

impl QueryParams {
    fn read(req: &Request, repeatable: &[&str]) -> Result<Self, InvalidRequest> {
        let map = req.query_string_parameters();
        let mut names: Vec<String> = map.iter().map(|(name, _)| name.to_owned()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1] && !repeatable.contains(&p[0].as_str())) {
            return Err(InvalidRequest::duplicate(&pair[0]));
        }
        names.dedup();
        Ok(QueryParams { map, names })
    }

    fn each(&self) -> impl Iterator<Item = Param<'_>> {
        self.names.iter().map(|name| Param {
            name,
            value: self.map.first(name).unwrap_or_default(),
            all: self.map.all(name).unwrap_or_default(),
        })
    }
}

/// One parameter: its name, its (first) value, and every value given.
struct Param<'a> {
    name: &'a str,
    value: &'a str,
    all: Vec<&'a str>,
}

impl Param<'_> {
    fn invalid(&self, why: &str) -> InvalidRequest {
        InvalidRequest::invalid(self.name, format!("Invalid {}: {why}.", self.name))
    }

    fn session(&self) -> Result<SessionId, InvalidRequest> {
        SessionId::parse(self.value).ok_or_else(|| self.invalid(&format!("must be {}", SessionId::FORMAT)))
    }

    /// A time bound (`created[...]`), in nanoseconds since the epoch.
    fn instant(&self) -> Result<i128, InvalidRequest> {
        crate::time::parse_instant_nanos(self.value)
            .ok_or_else(|| self.invalid("must be an RFC 3339 time or Unix seconds"))
    }
}

/// Parses the list query, refusing unknown and repeated parameters (only `status` repeats).
pub fn list_query(req: &Request) -> Result<ListQuery, ApiError> {
    let params = QueryParams::read(req, &["status"])?;
    let mut query = ListQuery::default();
    let mut bounds = TimeBounds::default();
    for param in params.each() {
        let (name, value) = (param.name, param.value);
        match name {
            "session_id" => query.session_id = Some(param.session()?),
            "limit" => {
                let limit = value.parse().ok().filter(|l| (1..=MAX_LIMIT).contains(l));
                query.limit =
                    limit.ok_or_else(|| param.invalid(&format!("must be an integer from 1 to {MAX_LIMIT}")))?;
            }
            "starting_after" | "ending_before" => {
                if query.cursor.is_some() {
                    let both = "starting_after and ending_before cannot be used together.";
                    return Err(InvalidRequest::invalid("ending_before", both).into());
                }
                let id = AttemptId::parse(value)
                    .ok_or_else(|| param.invalid(&format!("must be a payment attempt id ({})", AttemptId::FORMAT)))?;
                query.cursor =
                    Some(if name == "starting_after" { Cursor::StartingAfter(id) } else { Cursor::EndingBefore(id) });
            }
            "status" => {
                // `status=failed&status=pending` or `status=failed,pending`.
                for text in param.all.iter().flat_map(|v| v.split(',')) {
                    let status = Status::parse(text).map_err(|why| param.invalid(&why.to_string()))?;
                    if !query.statuses.contains(&status) {
                        query.statuses.push(status);
                    }
                }
            }
            "capability" => {
                query.capability = Some(crate::validation::capability_text(value, name)?);
            }
            "created[gte]" | "created[gt]" | "created[lte]" | "created[lt]" => bounds.set(name, param.instant()?)?,
            other => return Err(InvalidRequest::unknown(other).into()),
        }
    }
    query.created = bounds.range()?;
    Ok(query)
}

/// Parses `GET /v1/payments/attempts/summary`: a session's totals, or the organization's,
/// optionally for attempts created within whole hours (`created[gte]`, `created[lt]`).
pub fn summary_query(req: &Request) -> Result<SummaryScope, ApiError> {
    let params = QueryParams::read(req, &[])?;
    let (mut session, mut from, mut to) = (None, None, None);
    for param in params.each() {
        let (name, invalid) = (param.name, |why: &str| param.invalid(why));
        match name {
            "session_id" => session = Some(param.session()?),
            "created[gte]" | "created[lt]" => {
                let nanos = param.instant()?;
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
    match params.iter().map(|(name, _)| name).min() {
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
