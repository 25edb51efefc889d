//! Reads what local runs need from `template.yaml`: the table definition and the HTTP routes,
//! so that local runs and tests use exactly what is deployed.

use std::path::Path;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_dynamodb::Client;
use yaml_rust2::{Yaml, YamlLoader};

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("template.yaml is not YAML: {0}")]
    Yaml(String),
    #[error("template.yaml: {0}")]
    Shape(String),
}

/// One `HttpApi` event of a function: `GET /v1/payments/attempts/{id}` served by `retrieve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: String,
    pub path: String,
    /// The cargo binary of the function (its `BuildProperties.Binary`).
    pub function: String,
    /// `Auth.Authorizer: AWS_IAM`: callers sign with SigV4 instead of sending a JWT.
    pub iam: bool,
}

#[derive(Debug, Clone)]
pub struct Template {
    table: Yaml,
    pub routes: Vec<Route>,
    /// DynamoDB actions each function's role allows, by binary.
    pub dynamodb_actions: Vec<(String, Vec<String>)>,
    /// `Globals.Function.Timeout`: how long each invocation may run.
    pub function_timeout: std::time::Duration,
    /// The table's stream mappings (each `DynamoDB` event: the summarizer's, the publisher's).
    pub stream_mappings: Vec<StreamMappingSpec>,
    /// The event bus the publisher puts on, as the parameters' defaults name it.
    pub events: EventsSpec,
}

/// The stack's event bus and its archive, by the template's parameter defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsSpec {
    /// `EventBusName`.
    pub bus_name: String,
    /// `EventSource`: the `source` of every event.
    pub source: String,
    /// `EventArchiveRetentionDays`.
    pub archive_retention_days: i32,
}

/// What a `DynamoDB` event source says about delivering the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamMappingSpec {
    /// The cargo binary of the function.
    pub function: String,
    pub batch_size: usize,
    /// Failed deliveries of a batch after the first before Lambda parks it (sends it to the
    /// on-failure destination) and goes on; `None`: until the records expire.
    pub maximum_retry_attempts: Option<u32>,
    /// `FilterCriteria` patterns (a record is delivered if any matches; none: every record).
    pub filters: Vec<serde_json::Value>,
}

fn shape(what: impl Into<String>) -> TemplateError {
    TemplateError::Shape(what.into())
}

fn str_at<'a>(node: &'a Yaml, key: &str) -> Result<&'a str, TemplateError> {
    node[key].as_str().ok_or_else(|| shape(format!("missing string `{key}`")))
}

/// The DynamoDB actions a function's role allows (`Role: !GetAtt <role>.Arn`, its inline
/// policies).
fn dynamodb_actions_of(resources: &yaml_rust2::yaml::Hash, function: &Yaml) -> Vec<String> {
    let role = function["Properties"]["Role"].as_str().unwrap_or_default().trim_end_matches(".Arn");
    let role = resources.get(&Yaml::String(role.to_owned())).unwrap_or(&Yaml::BadValue);
    let policies = role["Properties"]["Policies"].as_vec().into_iter().flatten();
    let statements = policies.flat_map(|policy| policy["PolicyDocument"]["Statement"].as_vec().into_iter().flatten());
    let mut actions = Vec::new();
    for statement in statements {
        match &statement["Action"] {
            Yaml::String(action) => actions.push(action.clone()),
            Yaml::Array(list) => actions.extend(list.iter().filter_map(Yaml::as_str).map(str::to_owned)),
            _ => {}
        }
    }
    actions.retain(|action| action.starts_with("dynamodb:"));
    actions
}

/// An `HttpApi` event: one route to the function.
fn http_route(function: &str, properties: &Yaml) -> Result<Route, TemplateError> {
    Ok(Route {
        method: str_at(properties, "Method")?.to_ascii_uppercase(),
        path: str_at(properties, "Path")?.to_owned(),
        function: function.to_owned(),
        iam: properties["Auth"]["Authorizer"].as_str() == Some("AWS_IAM"),
    })
}

/// A `DynamoDB` event: how Lambda delivers the table's stream to the function.
fn stream_mapping_of(function: &str, properties: &Yaml) -> Result<StreamMappingSpec, TemplateError> {
    let mut filters = Vec::new();
    for filter in properties["FilterCriteria"]["Filters"].as_vec().into_iter().flatten() {
        let pattern = str_at(filter, "Pattern")?;
        filters.push(serde_json::from_str(pattern).map_err(|e| shape(format!("filter: {e}")))?);
    }
    Ok(StreamMappingSpec {
        function: function.to_owned(),
        batch_size: properties["BatchSize"].as_i64().and_then(|n| usize::try_from(n).ok()).unwrap_or(100),
        // Lambda's default is -1: retry until the record expires.
        maximum_retry_attempts: properties["MaximumRetryAttempts"].as_i64().and_then(|n| u32::try_from(n).ok()),
        filters,
    })
}

/// The bus's parameters, by their defaults.
fn events_of(doc: &Yaml) -> Result<EventsSpec, TemplateError> {
    let default = |name: &str| {
        let value = &doc["Parameters"][name]["Default"];
        value.as_str().map(str::to_owned).or_else(|| value.as_i64().map(|n| n.to_string()))
    };
    let missing = |name: &str| shape(format!("no default for parameter {name}"));
    Ok(EventsSpec {
        bus_name: default("EventBusName").ok_or_else(|| missing("EventBusName"))?,
        source: default("EventSource").ok_or_else(|| missing("EventSource"))?,
        archive_retention_days: default("EventArchiveRetentionDays")
            .and_then(|days| days.parse().ok())
            .ok_or_else(|| missing("EventArchiveRetentionDays"))?,
    })
}

impl Template {
    pub fn load(path: &Path) -> Result<Self, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Read(path.display().to_string(), e))?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let docs = YamlLoader::load_from_str(text).map_err(|e| TemplateError::Yaml(e.to_string()))?;
        let resources =
            docs.first().map(|d| &d["Resources"]).and_then(Yaml::as_hash).ok_or_else(|| shape("no Resources"))?;
        let mut table = None;
        let mut routes = Vec::new();
        let mut dynamodb_actions = Vec::new();
        let mut stream_mappings = Vec::new();
        for (_, resource) in resources {
            match resource["Type"].as_str() {
                Some("AWS::DynamoDB::Table") => table = Some(resource["Properties"].clone()),
                Some("AWS::Serverless::Function") => {
                    let function = str_at(&resource["Metadata"]["BuildProperties"], "Binary")?;
                    dynamodb_actions.push((function.to_owned(), dynamodb_actions_of(resources, resource)));
                    for (_, event) in resource["Properties"]["Events"].as_hash().into_iter().flatten() {
                        match event["Type"].as_str() {
                            Some("HttpApi") => routes.push(http_route(function, &event["Properties"])?),
                            Some("DynamoDB") => {
                                stream_mappings.push(stream_mapping_of(function, &event["Properties"])?)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let table = table.ok_or_else(|| shape("no AWS::DynamoDB::Table resource"))?;
        let timeout = docs.first().and_then(|d| d["Globals"]["Function"]["Timeout"].as_i64());
        let timeout =
            timeout.and_then(|t| u64::try_from(t).ok()).ok_or_else(|| shape("no Globals.Function.Timeout"))?;
        let events = docs.first().map(events_of).transpose()?.ok_or_else(|| shape("no Parameters"))?;
        Ok(Template {
            table,
            routes,
            dynamodb_actions,
            function_timeout: std::time::Duration::from_secs(timeout),
            stream_mappings,
            events,
        })
    }

    /// The stream mapping of the function built as `binary`.
    pub fn stream_mapping(&self, binary: &str) -> Option<&StreamMappingSpec> {
        self.stream_mappings.iter().find(|m| m.function == binary)
    }

    /// Creates the table as declared (keys, indexes, stream, TTL) under `name`; an existing table is kept.
    pub async fn create_table(
        &self,
        client: &Client,
        name: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if client.describe_table().table_name(name).send().await.is_ok() {
            return Ok(());
        }
        let t = &self.table;
        let mut create = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::from(t["BillingMode"].as_str().unwrap_or("PAY_PER_REQUEST")))
            .set_key_schema(Some(key_schema(&t["KeySchema"])?));
        for def in t["AttributeDefinitions"].as_vec().into_iter().flatten() {
            create = create.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(str_at(def, "AttributeName")?)
                    .attribute_type(ScalarAttributeType::from(str_at(def, "AttributeType")?))
                    .build()?,
            );
        }
        for index in t["GlobalSecondaryIndexes"].as_vec().into_iter().flatten() {
            create = create.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(str_at(index, "IndexName")?)
                    .set_key_schema(Some(key_schema(&index["KeySchema"])?))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(str_at(&index["Projection"], "ProjectionType")?))
                            .build(),
                    )
                    .build()?,
            );
        }
        if let Some(view) = t["StreamSpecification"]["StreamViewType"].as_str() {
            let stream =
                StreamSpecification::builder().stream_enabled(true).stream_view_type(StreamViewType::from(view));
            create = create.stream_specification(stream.build()?);
        }
        match create.send().await {
            Ok(_) => {}
            // An earlier try of this call created it, its answer late (a loaded machine): ours.
            Err(error) if error.as_service_error().is_some_and(|e| e.is_resource_in_use_exception()) => {}
            Err(error) => return Err(error.into()),
        }
        let ttl = &t["TimeToLiveSpecification"];
        if ttl["Enabled"].as_bool() == Some(true) {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(str_at(ttl, "AttributeName")?)
                        .enabled(true)
                        .build()?,
                )
                .send()
                .await?;
        }
        Ok(())
    }

    /// The TTL attribute the table declares, if any.
    pub fn ttl_attribute(&self) -> Option<&str> {
        self.table["TimeToLiveSpecification"]["AttributeName"].as_str()
    }
}

fn key_schema(node: &Yaml) -> Result<Vec<KeySchemaElement>, Box<dyn std::error::Error + Send + Sync>> {
    let mut keys = Vec::new();
    for key in node.as_vec().ok_or_else(|| shape("KeySchema is not a list"))? {
        keys.push(
            KeySchemaElement::builder()
                .attribute_name(str_at(key, "AttributeName")?)
                .key_type(KeyType::from(str_at(key, "KeyType")?))
                .build()?,
        );
    }
    Ok(keys)
}

/// Matches a request path against a route path with `{name}` segments, returning the path
/// parameters.
pub fn match_path(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let (mut pattern_parts, mut path_parts) = (pattern.split('/'), path.split('/'));
    let mut params = Vec::new();
    loop {
        match (pattern_parts.next(), path_parts.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) if p.starts_with('{') && p.ends_with('}') && !s.is_empty() => {
                params.push((p[1..p.len() - 1].to_owned(), s.to_owned()));
            }
            (Some(p), Some(s)) if p == s => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_parameters() {
        let p = "/v1/payments/attempts/{id}";
        assert_eq!(match_path(p, "/v1/payments/attempts/payatt_1"), Some(vec![("id".into(), "payatt_1".into())]));
        assert_eq!(match_path(p, "/v1/payments/attempts/"), None);
        assert_eq!(match_path(p, "/v1/payments/attempts"), None);
        assert_eq!(match_path(p, "/v1/payments/attempts/a/b"), None);
        assert_eq!(match_path("/v1/payments/attempts", "/v1/payments/attempts"), Some(vec![]));
    }
}
