use lambda_http::{service_fn, Error};
use payment_attempts::runtime::{self, Settings};

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let settings = Settings::from_env()?;
    let store = runtime::store(&settings).await?;
    lambda_http::run(service_fn(|req| record_attempt::handle(&store, &settings, req))).await
}
