use lambda_http::lambda_runtime::{self, service_fn};
use lambda_http::Error;
use payment_attempts::runtime::{self, Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let settings = Settings::from_env()?;
    let store = runtime::store(&settings).await?;
    lambda_runtime::run(service_fn(|event| record_attempt::worker::handle(&store, event))).await
}
