use lambda_http::lambda_runtime::{self, service_fn};
use lambda_http::Error;
use payment_attempts::runtime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (store, _) = runtime::init().await?;
    lambda_runtime::run_concurrent(service_fn(move |event| summarizer::handle(store, event))).await
}
