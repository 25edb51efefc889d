use lambda_http::{service_fn, Error};
use payment_attempts::runtime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (store, settings) = runtime::init().await?;
    lambda_http::run_concurrent(service_fn(move |req| record_attempt::handle(store, settings, req))).await
}
