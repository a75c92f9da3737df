//! The usage API, under `/api/v1` (behind the admin token):
//!
//! - `GET /usage?from=&to=&group_by=endpoint,provider,model,key&bucket=minute|hour|day`:
//!   requests, errors, tokens, cost and latency of the calls received in
//!   `[from, to)`, in total and per group (and time bucket);
//! - `GET /requests?from=&to=&limit=&before_id=`: the request log, newest
//!   first, paged by id.
//!
//! Times are RFC 3339 (`2026-01-31T12:00:00Z`) or Unix milliseconds;
//! `to` defaults to now and `from` to 24 hours before `to`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Telemetry;
use crate::admin::ApiError;
use crate::store::{UsageBucket, UsageGroup, UsageQuery, UsageRow, from_unix_ms, unix_ms};

/// Most buckets one usage query may return per group.
const MAX_BUCKETS: i64 = 5_000;
const DEFAULT_RANGE: Duration = Duration::from_secs(24 * 3600);
const MAX_PAGE: u32 = 500;
const DEFAULT_PAGE: u32 = 50;

pub fn router<S>(telemetry: Arc<Telemetry>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/usage", get(usage))
        .route("/requests", get(requests))
        .with_state(telemetry)
}

#[derive(Debug, Default, Deserialize)]
struct UsageParams {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    bucket: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RequestsParams {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
    before_id: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "usage API internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error (see the gateway log)",
    )
}

/// RFC 3339 or Unix milliseconds.
fn parse_time(name: &str, value: &str) -> Result<SystemTime, ApiError> {
    let value = value.trim();
    if let Ok(ms) = value.parse::<i64>() {
        return Ok(from_unix_ms(ms));
    }
    humantime::parse_rfc3339_weak(value).map_err(|_| {
        invalid(format!(
            "'{name}' must be an RFC 3339 time (2026-01-31T12:00:00Z) or Unix milliseconds"
        ))
    })
}

fn parse_range(from: Option<&str>, to: Option<&str>) -> Result<(SystemTime, SystemTime), ApiError> {
    let to = match to {
        Some(to) => parse_time("to", to)?,
        None => SystemTime::now(),
    };
    let from = match from {
        Some(from) => parse_time("from", from)?,
        None => to
            .checked_sub(DEFAULT_RANGE)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    };
    if from >= to {
        return Err(invalid("'from' must be before 'to'"));
    }
    Ok((from, to))
}

fn parse_groups(value: Option<&str>) -> Result<Vec<UsageGroup>, ApiError> {
    let mut groups = Vec::new();
    for name in value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        let group = match name {
            "endpoint" => UsageGroup::Endpoint,
            "provider" => UsageGroup::Provider,
            "model" => UsageGroup::Model,
            "key" => UsageGroup::Key,
            other => {
                return Err(invalid(format!(
                    "unknown group_by '{other}': use endpoint, provider, model or key"
                )));
            }
        };
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    Ok(groups)
}

fn parse_bucket(value: Option<&str>) -> Result<Option<UsageBucket>, ApiError> {
    match value.map(str::trim).unwrap_or_default() {
        "" | "none" => Ok(None),
        "minute" => Ok(Some(UsageBucket::Minute)),
        "hour" => Ok(Some(UsageBucket::Hour)),
        "day" => Ok(Some(UsageBucket::Day)),
        other => Err(invalid(format!(
            "unknown bucket '{other}': use minute, hour, day or none"
        ))),
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn row_json(row: &UsageRow) -> Value {
    let mut value = serde_json::to_value(row).unwrap_or(Value::Null);
    if let (Some(ms), Some(object)) = (row.bucket_start_ms, value.as_object_mut()) {
        object.insert("bucket_start".into(), json!(rfc3339(from_unix_ms(ms))));
    }
    value
}

async fn usage(
    State(telemetry): State<Arc<Telemetry>>,
    params: Result<Query<UsageParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
    let group_by = parse_groups(params.group_by.as_deref())?;
    let bucket = parse_bucket(params.bucket.as_deref())?;
    if let Some(bucket) = bucket {
        let span = unix_ms(to) - unix_ms(from);
        if span / bucket.millis() > MAX_BUCKETS {
            return Err(invalid(format!(
                "too many buckets: at most {MAX_BUCKETS} per group; use a larger bucket or a shorter range"
            )));
        }
    }
    let store = telemetry.store();
    let totals = store
        .query_usage(&UsageQuery {
            from,
            to,
            group_by: Vec::new(),
            bucket: None,
        })
        .await
        .map_err(internal)?;
    let rows = store
        .query_usage(&UsageQuery {
            from,
            to,
            group_by: group_by.clone(),
            bucket,
        })
        .await
        .map_err(internal)?;
    Ok(Json(json!({
        "from": rfc3339(from),
        "to": rfc3339(to),
        "group_by": group_by,
        "bucket": bucket,
        "totals": totals.first().map(row_json).unwrap_or_else(|| row_json(&UsageRow::default())),
        "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
    })))
}

async fn requests(
    State(telemetry): State<Arc<Telemetry>>,
    params: Result<Query<RequestsParams>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| invalid(e.body_text()))?;
    let (from, to) = parse_range(params.from.as_deref(), params.to.as_deref())?;
    let limit = match params.limit.as_deref() {
        None => DEFAULT_PAGE,
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| invalid(format!("'limit' must be 1 to {MAX_PAGE}")))?,
    };
    let before_id = params
        .before_id
        .as_deref()
        .map(|text| {
            text.trim()
                .parse::<i64>()
                .map_err(|_| invalid("'before_id' must be an integer"))
        })
        .transpose()?;
    let entries = telemetry
        .store()
        .list_request_log(from, to, before_id, limit)
        .await
        .map_err(internal)?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let items: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut value = serde_json::to_value(e).unwrap_or(Value::Null);
            if let Some(object) = value.as_object_mut() {
                object.insert("at".into(), json!(rfc3339(from_unix_ms(e.entry.at_ms))));
            }
            value
        })
        .collect();
    Ok(Json(json!({ "requests": items, "next_before_id": next })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_times_groups_and_buckets() {
        assert_eq!(parse_time("from", "1000").unwrap(), from_unix_ms(1000));
        assert_eq!(
            parse_time("from", "1970-01-01T00:00:01Z").unwrap(),
            from_unix_ms(1000)
        );
        assert!(parse_time("from", "yesterday").is_err());
        assert!(parse_range(Some("2000"), Some("1000")).is_err());
        assert_eq!(
            parse_groups(Some("provider, endpoint,provider")).unwrap(),
            vec![UsageGroup::Provider, UsageGroup::Endpoint]
        );
        assert!(parse_groups(Some("colour")).is_err());
        assert_eq!(parse_bucket(Some("hour")).unwrap(), Some(UsageBucket::Hour));
        assert_eq!(parse_bucket(None).unwrap(), None);
        assert!(parse_bucket(Some("week")).is_err());
    }
}
