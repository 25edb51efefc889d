//! Metrics without an agent: CloudWatch Embedded Metric Format (EMF) lines on stdout, which
//! Lambda ships to CloudWatch Logs and CloudWatch turns into metrics (namespace
//! [`NAMESPACE`]). One line per event, written at once: nothing is shared across invocations,
//! so concurrent invokes in one environment (Managed Instances) cannot mix their figures.

use std::io::Write;

use serde_json::{json, Map, Value};

use crate::attempt::Status;
use crate::money::Amount;

pub const NAMESPACE: &str = "PaymentAttempts";

/// Something worth counting.
#[derive(Debug, Clone, Copy)]
pub enum Metric<'a> {
    /// A new attempt was recorded, in its first status.
    AttemptRecorded { status: Status, rail: Option<&'a str>, amount_usd: &'a Amount },
    /// A pending attempt moved to `status`.
    AttemptSettled { status: Status, rail: Option<&'a str>, amount_usd: &'a Amount },
    /// A write answered from its Idempotency-Key's stored response.
    IdempotentReplay,
    /// An error answer: 4xx by code, 503 (storage unavailable), other 5xx.
    ErrorAnswer { status: u16, code: &'a str },
    /// DynamoDB throttled a call (after the SDK's retries).
    DynamoDbThrottled,
    /// DynamoDB reported a transaction conflict.
    DynamoDbConflict,
    /// A list page: the Query calls it took and the rows it showed.
    ListPage { reads: u32, rows: usize },
    /// A stream batch the summarizer took: attempt changes counted, and records left out of
    /// the summaries because they do not decode.
    SummarizerBatch { counted: usize, left_out: usize },
    /// A stream batch the publisher took: events published, the PutEvents calls they took,
    /// events still unpublished when it gave up (the batch is delivered again from the first),
    /// and records left out because they do not decode.
    PublisherBatch { published: usize, calls: usize, unpublished: usize, left_out: usize },
}

impl Metric<'_> {
    /// The EMF document, as one line of JSON.
    pub fn line(&self, timestamp_ms: i64) -> String {
        let mut doc = Document::default();
        match *self {
            Metric::AttemptRecorded { status, rail, amount_usd }
            | Metric::AttemptSettled { status, rail, amount_usd } => {
                // Separate amounts for the two events, so that neither sum counts an attempt twice.
                let (name, amount_name) = if matches!(self, Metric::AttemptRecorded { .. }) {
                    ("AttemptsRecorded", "AmountRecordedUsd")
                } else {
                    ("AttemptsSettled", "AmountSettledUsd")
                };
                doc.dimension("Status", status.as_str());
                // A property, not a dimension: rail names come from callers, and every
                // distinct dimension value is a metric billed on its own.
                if let Some(rail) = rail {
                    doc.fields.insert("Rail".to_owned(), Value::String(rail.to_owned()));
                }
                doc.count(name);
                // CloudWatch keeps metric values as doubles anyway; the audit record has the
                // exact amount.
                let amount = serde_json::from_str(&amount_usd.to_string()).unwrap_or(Value::Null);
                doc.value(amount_name, amount, "None");
            }
            Metric::IdempotentReplay => doc.count("IdempotentReplays"),
            Metric::ErrorAnswer { status, code } => match status {
                503 => doc.count("Unavailable"),
                500..=599 => doc.count("ServerErrors"),
                _ => {
                    doc.dimension("Code", code);
                    doc.count("ClientErrors");
                }
            },
            Metric::DynamoDbThrottled => doc.count("DynamoDbThrottles"),
            Metric::DynamoDbConflict => doc.count("DynamoDbConflicts"),
            Metric::ListPage { reads, rows } => {
                doc.value("ListReadsPerPage", json!(reads), "Count");
                doc.value("ListRowsPerPage", json!(rows), "Count");
            }
            Metric::SummarizerBatch { counted, left_out } => {
                doc.value("ChangesSummarized", json!(counted), "Count");
                doc.value("ChangesLeftOutOfSummaries", json!(left_out), "Count");
            }
            Metric::PublisherBatch { published, calls, unpublished, left_out } => {
                doc.value("EventsPublished", json!(published), "Count");
                doc.value("PutEventsCalls", json!(calls), "Count");
                doc.value("EventsUnpublished", json!(unpublished), "Count");
                doc.value("ChangesLeftOutOfEvents", json!(left_out), "Count");
            }
        }
        doc.line(timestamp_ms)
    }

    /// Writes the line to stdout, where Lambda ships it to CloudWatch; elsewhere (the local
    /// server, tests running handlers in-process) there is nobody to read it.
    pub fn emit(&self) {
        static ON_LAMBDA: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        if !*ON_LAMBDA.get_or_init(|| std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()) {
            return;
        }
        let line = self.line(crate::time::Timestamp::now().unix_millis());
        // A metric that cannot be written is not worth failing a request for.
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }
}

/// An EMF document as it is built: its fields, and which of them are dimensions and metrics.
#[derive(Default)]
struct Document {
    fields: Map<String, Value>,
    dimensions: Vec<&'static str>,
    metrics: Vec<(&'static str, &'static str)>,
}

impl Document {
    fn dimension(&mut self, name: &'static str, value: &str) {
        self.fields.insert(name.to_owned(), Value::String(value.to_owned()));
        self.dimensions.push(name);
    }

    fn value(&mut self, name: &'static str, value: Value, unit: &'static str) {
        self.fields.insert(name.to_owned(), value);
        self.metrics.push((name, unit));
    }

    fn count(&mut self, name: &'static str) {
        self.value(name, json!(1), "Count");
    }

    fn line(mut self, timestamp_ms: i64) -> String {
        let metrics: Vec<Value> = self.metrics.iter().map(|(name, unit)| json!({"Name": name, "Unit": unit})).collect();
        let directive = json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": [self.dimensions], "Metrics": metrics}],
        });
        self.fields.insert("_aws".to_owned(), directive);
        Value::Object(self.fields).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// Checks a line against the EMF specification: `_aws.Timestamp` in milliseconds, each
    /// directive a namespace, dimension sets naming top-level strings, metrics naming
    /// top-level numbers with a CloudWatch unit.
    fn assert_emf(line: &str) -> Value {
        let doc: Value = serde_json::from_str(line).expect("one JSON object per line");
        assert!(!line.contains('\n'));
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_i64().is_some_and(|t| t > 1_600_000_000_000), "{line}");
        let directives = aws["CloudWatchMetrics"].as_array().expect("CloudWatchMetrics");
        assert!(!directives.is_empty());
        for directive in directives {
            assert!(directive["Namespace"].as_str().is_some_and(|n| !n.is_empty() && n.len() <= 255));
            for set in directive["Dimensions"].as_array().expect("Dimensions") {
                let set = set.as_array().expect("a dimension set is an array");
                assert!(set.len() <= 30);
                for key in set {
                    let key = key.as_str().expect("dimension names are strings");
                    assert!(doc[key].as_str().is_some_and(|v| !v.is_empty()), "dimension {key} in {line}");
                }
            }
            let metrics = directive["Metrics"].as_array().expect("Metrics");
            assert!(!metrics.is_empty() && metrics.len() <= 100);
            for metric in metrics {
                let name = metric["Name"].as_str().expect("Name");
                assert!(doc[name].is_number(), "metric {name} has a number in {line}");
                let unit = metric["Unit"].as_str().unwrap_or("None");
                assert!(["Count", "None", "Milliseconds"].contains(&unit), "{unit}");
            }
        }
        doc
    }

    #[test]
    fn every_metric_is_a_valid_emf_line() {
        let amount = Amount::from_str("1000000.000001").unwrap();
        let now = 1_779_704_040_000;
        let all = [
            Metric::AttemptRecorded { status: Status::Pending, rail: Some("mpp_tempo"), amount_usd: &amount },
            Metric::AttemptSettled { status: Status::Succeeded, rail: None, amount_usd: &amount },
            Metric::IdempotentReplay,
            Metric::ErrorAnswer { status: 400, code: "parameter_invalid" },
            Metric::ErrorAnswer { status: 503, code: "storage_unavailable" },
            Metric::ErrorAnswer { status: 500, code: "internal_error" },
            Metric::DynamoDbThrottled,
            Metric::DynamoDbConflict,
            Metric::ListPage { reads: 3, rows: 50 },
            Metric::SummarizerBatch { counted: 99, left_out: 1 },
            Metric::PublisherBatch { published: 98, calls: 10, unpublished: 2, left_out: 0 },
        ];
        for metric in all {
            let doc = assert_emf(&metric.line(now));
            assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
        }
        let recorded = Metric::AttemptRecorded { status: Status::Failed, rail: Some("x402"), amount_usd: &amount };
        let doc = assert_emf(&recorded.line(now));
        assert_eq!(doc["AmountRecordedUsd"].as_f64(), Some(1000000.000001));
        assert_eq!((doc["Status"].as_str(), doc["Rail"].as_str()), (Some("failed"), Some("x402")));
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Status"]]), "rails are no dimension");
        let refused = assert_emf(&Metric::ErrorAnswer { status: 409, code: "duplicate_request" }.line(now));
        assert_eq!((refused["Code"].as_str(), refused["ClientErrors"].as_i64()), (Some("duplicate_request"), Some(1)));
    }
}
