//! Local runs without Docker or AWS: DynamoDB Local, the table and routes read from
//! `template.yaml`, and an HTTP server that calls the same Lambda handlers.

pub mod dynamodb_local;
pub mod local_api;
pub mod template;
pub mod token;
