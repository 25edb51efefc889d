//! Local runs without Docker or AWS: DynamoDB Local, the table and routes read from
//! `template.yaml`, an HTTP server that calls the same Lambda handlers, the stream functions
//! on their mappings, an EventBridge emulator, and a Runtime API that runs the functions' own
//! binaries (the benchmark and the concurrency test).

pub mod dynamodb_local;
pub mod eventbridge_local;
pub mod local_api;
pub mod runtime_api;
pub mod stream_mapping;
pub mod template;
pub mod token;
