//! What the template and the docs promise, checked where a change would break them: the
//! table, routes and stream mapping the tests build from, queue policies, tracing and logs,
//! alarms and their runbooks, and links that stay inside the repository.

use yaml_rust2::{Yaml, YamlLoader};

use crate::common::{self, ROOT};

#[test]
fn the_template_declares_the_table_and_every_route() {
    let t = common::template();
    let routes: Vec<String> = t.routes.iter().map(|r| format!("{} {} {}", r.method, r.path, r.function)).collect();
    let mapping = t.stream_mapping("summarizer").cloned().expect("the summarizer maps the table's stream");
    assert_eq!((mapping.function.as_str(), mapping.batch_size, mapping.filters.len()), ("summarizer", 100, 1));
    assert_eq!(mapping.maximum_retry_attempts, Some(10));
    // The publisher reads the same records, on a mapping of its own.
    let publisher = t.stream_mapping("publisher").expect("the publisher maps the table's stream");
    assert_eq!(
        (publisher.batch_size, &publisher.filters, publisher.maximum_retry_attempts),
        (100, &mapping.filters, Some(10))
    );
    for expected in [
        "GET /v1/payments/attempts list",
        "GET /v1/payments/attempts/summary list",
        "GET /v1/payments/attempts/{id} retrieve",
        "POST /v1/payments/attempts record-attempt",
        "POST /v1/payments/attempts/{id} record-attempt",
        "POST /internal/v1/payments/attempts record-attempt",
        "POST /internal/v1/payments/attempts/{id} record-attempt",
    ] {
        assert!(routes.iter().any(|r| r == expected), "{expected} not in {routes:?}");
    }
    assert_eq!(t.ttl_attribute(), Some(payment_attempts::store::schema::TTL_ATTRIBUTE));
    // The request budget is derived from the timeout the functions really get.
    assert_eq!(t.function_timeout, payment_attempts::budget::FUNCTION_TIMEOUT);
    // DynamoDB Local checks no IAM: the template must allow what each function's calls need,
    // and only that (scripts/check-iam checks every action of every role, as SAM deploys it).
    let writer: &[&str] =
        &["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:ConditionCheckItem"];
    let needs: [(&str, &[&str]); 6] = [
        // Every function's init warm-up and the layout are GetItems.
        ("list", &["dynamodb:Query", "dynamodb:GetItem"]),
        ("retrieve", &["dynamodb:GetItem"]),
        // Transactions: Put (attempt, key, guard), Delete and ConditionCheck (guard); reads:
        // GetItem. Only the summarizer updates (counters).
        ("record-attempt", writer),
        ("record-attempt-worker", writer),
        (
            "summarizer",
            &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DescribeStream",
                "dynamodb:GetRecords",
                "dynamodb:GetShardIterator",
                "dynamodb:ListStreams",
            ],
        ),
        // The stream only: events come from its images, and nothing is read or written.
        (
            "publisher",
            &["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
        ),
    ];
    for (function, actions) in needs {
        let allowed = &t.dynamodb_actions.iter().find(|(f, _)| f == function).expect(function).1;
        let mut sorted = allowed.clone();
        sorted.sort();
        let mut wanted: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
        wanted.sort();
        assert_eq!(sorted, wanted, "{function}: least privilege, and enough");
    }
    let iam: Vec<&str> = t.routes.iter().filter(|r| r.iam).map(|r| r.path.as_str()).collect();
    assert_eq!(iam, ["/internal/v1/payments/attempts", "/internal/v1/payments/attempts/{id}"]);
}

/// The template's resources as YAML (intrinsic functions read as their arguments).
fn resources() -> yaml_rust2::yaml::Hash {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    docs[0]["Resources"].as_hash().unwrap().clone()
}

fn of_type(resources: &yaml_rust2::yaml::Hash, kind: &str) -> Vec<(String, Yaml)> {
    resources
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(kind))
        .map(|(k, r)| (k.as_str().unwrap_or_default().to_owned(), r.clone()))
        .collect()
}

#[test]
fn only_trusted_writers_and_named_administrators_may_send_commands() {
    let resources = resources();
    let policies = of_type(&resources, "AWS::SQS::QueuePolicy");
    // (queue, statement, who may still send): everyone else is denied, and plain HTTP too.
    let expected = [
        ("AttemptsQueue", "OnlyTrustedWritersSend", &["TrustedWriterRoleArns", "QueueAdministratorRoleArns"][..]),
        (
            "AttemptsDeadLetterQueue",
            "OnlyTheWorkerAndAdministratorsSend",
            &["RecordAttemptWorkerFunctionRole", "QueueAdministratorRoleArns"],
        ),
        ("SummarizerFailureQueue", "OnlyTheSummarizerSends", &["SummarizerFunctionRole"]),
        ("PublisherFailureQueue", "OnlyThePublisherSends", &["PublisherFunctionRole"]),
    ];
    // The webhook's dead-letter queue allows only its rule to send (checked below).
    assert_eq!(policies.len(), expected.len() + 1);
    for (queue, sid, senders) in expected {
        let (_, policy) = policies.iter().find(|(_, p)| p["Properties"]["Queues"][0].as_str() == Some(queue)).unwrap();
        let statements = policy["Properties"]["PolicyDocument"]["Statement"].as_vec().unwrap();
        let send = statements.iter().find(|s| s["Sid"].as_str() == Some(sid)).unwrap();
        assert_eq!((send["Effect"].as_str(), send["Action"].as_str()), (Some("Deny"), Some("sqs:SendMessage")));
        assert_eq!(send["Principal"].as_str(), Some("*"));
        let named = format!("{:?}", send["Condition"]["StringNotLike"]["aws:PrincipalArn"]);
        for sender in senders {
            assert!(named.contains(sender), "{queue}: {sender} not in {named}");
        }
        let tls = statements.iter().find(|s| s["Sid"].as_str() == Some("TlsOnly")).unwrap();
        assert_eq!(tls["Condition"]["Bool"]["aws:SecureTransport"].as_str(), Some("false"), "{queue}");
    }
    let (_, webhook) = policies
        .iter()
        .find(|(_, p)| p["Properties"]["Queues"][0].as_str() == Some("WebhookDeadLetterQueue"))
        .expect("the webhook's dead-letter queue has a policy");
    let statements = webhook["Properties"]["PolicyDocument"]["Statement"].as_vec().unwrap();
    let send = statements.iter().find(|s| s["Effect"].as_str() == Some("Allow")).unwrap();
    assert_eq!(send["Principal"]["Service"].as_str(), Some("events.amazonaws.com"));
    assert_eq!(send["Condition"]["ArnEquals"]["aws:SourceArn"].as_str(), Some("WebhookRule.Arn"));
    let others = statements.iter().find(|s| s["Sid"].as_str() == Some("OnlyTheWebhookRuleSends")).unwrap();
    assert_eq!((others["Effect"].as_str(), others["Action"].as_str()), (Some("Deny"), Some("sqs:SendMessage")));
    assert_eq!(others["Condition"]["ArnNotEquals"]["aws:SourceArn"].as_str(), Some("WebhookRule.Arn"));
}

/// The publisher puts on the stack's bus with the source the parameters name; the archive
/// keeps that source's events for the days a parameter says; the webhook is optional, with
/// EventBridge's retries and a dead-letter queue.
#[test]
fn events_go_to_the_stacks_bus_its_archive_and_the_optional_webhook() {
    let resources = resources();
    let get = |name: &str| resources[&Yaml::String(name.to_owned())].clone();
    let variables = &get("PublisherFunction")["Properties"]["Environment"]["Variables"];
    assert_eq!(
        (variables["EVENT_BUS_NAME"].as_str(), variables["EVENT_SOURCE"].as_str()),
        (Some("EventBus"), Some("EventSource"))
    );
    assert_eq!(get("EventBus")["Properties"]["Name"].as_str(), Some("EventBusName"));
    let archive = &get("EventArchive")["Properties"];
    assert_eq!(archive["SourceArn"].as_str(), Some("EventBus.Arn"));
    assert_eq!(archive["RetentionDays"].as_str(), Some("EventArchiveRetentionDays"));
    assert_eq!(archive["EventPattern"]["source"][0].as_str(), Some("EventSource"));
    let events = common::template().events;
    assert_eq!((events.archive_retention_days, events.source.as_str()), (30, "payments.attempts"));
    for optional in ["WebhookConnection", "WebhookDestination", "WebhookRule", "WebhookRole", "WebhookDeadLetterQueue"]
    {
        assert_eq!(get(optional)["Condition"].as_str(), Some("HasWebhook"), "{optional}");
    }
    let target = &get("WebhookRule")["Properties"]["Targets"][0];
    assert_eq!(target["DeadLetterConfig"]["Arn"].as_str(), Some("WebhookDeadLetterQueue.Arn"));
    assert_eq!(target["RetryPolicy"]["MaximumEventAgeInSeconds"].as_i64(), Some(86400));
}

/// YAML as JSON, for comparing schemas written in either.
fn json_of(yaml: &Yaml) -> serde_json::Value {
    use serde_json::Value;
    match yaml {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(n) => Value::from(*n),
        Yaml::Real(r) => r.parse::<f64>().map_or(Value::Null, Value::from),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        Yaml::Hash(hash) => Value::Object(
            hash.iter().map(|(k, v)| (k.as_str().map(str::to_owned).unwrap_or_default(), json_of(v))).collect(),
        ),
        _ => Value::Null,
    }
}

/// The event schema's definitions of the attempt are openapi.yaml's, so that an event's
/// `detail.attempt` and retrieve's answer cannot drift apart.
#[test]
fn the_event_schema_shows_the_attempt_as_the_api_does() {
    let text = std::fs::read_to_string(format!("{ROOT}/openapi.yaml")).unwrap();
    let api = YamlLoader::load_from_str(&text).unwrap();
    let schemas = &api[0]["components"]["schemas"];
    let text = std::fs::read_to_string(format!("{ROOT}/schemas/payment_attempt_event.json")).unwrap();
    let event: serde_json::Value = serde_json::from_str(&text).unwrap();
    let defs = event["$defs"].as_object().unwrap();
    assert!(defs.contains_key("PaymentAttempt") && defs.len() > 5, "{:?}", defs.keys());
    for (name, def) in defs.iter().filter(|(name, _)| *name != "Detail") {
        let api = json_of(&schemas[name.as_str()]).to_string().replace("#/components/schemas/", "#/$defs/");
        let api: serde_json::Value = serde_json::from_str(&api).unwrap();
        assert_eq!(def, &api, "{name}: as openapi.yaml has it");
    }
    let types = &event["properties"]["detail-type"]["enum"];
    let words: Vec<&str> = payment_attempts::attempt_event::EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(types, &serde_json::json!(words));
}

#[test]
fn every_function_is_traced_and_logs_to_a_group_with_retention() {
    let text = std::fs::read_to_string(format!("{ROOT}/template.yaml")).unwrap();
    let docs = YamlLoader::load_from_str(&text).unwrap();
    assert_eq!(docs[0]["Globals"]["Function"]["Tracing"].as_str(), Some("Active"));
    let resources = resources();
    let functions = of_type(&resources, "AWS::Serverless::Function");
    assert_eq!(functions.len(), 6);
    for (name, function) in &functions {
        let group = function["Properties"]["LoggingConfig"]["LogGroup"].as_str().unwrap_or_default();
        let group = &resources[&Yaml::String(group.to_owned())];
        assert_eq!(group["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{name}");
        assert_eq!(group["Properties"]["RetentionInDays"].as_str(), Some("LogRetentionDays"), "{name}");
    }
    let api = &resources[&Yaml::String("HttpApi".to_owned())]["Properties"];
    assert_eq!(api["AccessLogSettings"]["DestinationArn"].as_str(), Some("ApiAccessLogGroup.Arn"));
    assert!(api["DefaultRouteSettings"]["ThrottlingRateLimit"].as_str().is_some());
    assert!(api["DefaultRouteSettings"]["ThrottlingBurstLimit"].as_str().is_some());
}

#[test]
fn the_alarms_have_runbooks_and_notify_the_topic() {
    let resources = resources();
    let alarms = of_type(&resources, "AWS::CloudWatch::Alarm");
    let mut names: Vec<&str> = alarms.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "Api5xxRateAlarm",
            "DeadLetterQueueNotEmptyAlarm",
            "DynamoDbThrottlesAlarm",
            "EventsBehindAlarm",
            "EventsIncompleteAlarm",
            "PublisherFailuresAlarm",
            "SummariesBehindAlarm",
            "SummariesIncompleteAlarm",
            "SummarizerFailuresAlarm",
            "WebhookDeadLettersAlarm",
            "WorkerErrorsAlarm"
        ]
    );
    let runbooks = std::fs::read_to_string(format!("{ROOT}/docs/operations.md")).unwrap();
    for (name, alarm) in &alarms {
        assert!(runbooks.contains(&format!("`{name}`")), "docs/operations.md explains {name}");
        let actions = format!("{:?}", alarm["Properties"]["AlarmActions"]);
        assert!(actions.contains("NotifyAlarms") && actions.contains("AlarmTopicArn"), "{name}: {actions}");
    }
    assert_eq!(of_type(&resources, "AWS::CloudWatch::Dashboard").len(), 1);
}

/// The README and the docs link only to files of the repository, and every such file exists:
/// a reader who clones it has everything they point to.
#[test]
fn every_link_in_the_docs_stays_inside_the_repository() {
    let mut pages = vec![std::path::PathBuf::from(format!("{ROOT}/README.md"))];
    pages.extend(std::fs::read_dir(format!("{ROOT}/docs")).unwrap().map(|entry| entry.unwrap().path()));
    let root = std::fs::canonicalize(ROOT).unwrap();
    let mut links = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(!text.contains("../shared") && !text.contains("DESIGN.md"), "{page:?} points outside the repository");
        for target in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if target.starts_with("http") {
                continue;
            }
            let file = target.split('#').next().unwrap_or_default();
            let path = page.parent().unwrap().join(file);
            let resolved =
                std::fs::canonicalize(&path).unwrap_or_else(|_| panic!("{page:?} links {target}: no such file"));
            assert!(resolved.starts_with(&root), "{page:?} links {target}, outside the repository");
            links += 1;
        }
    }
    assert!(links > 10, "the README links the docs");
}
