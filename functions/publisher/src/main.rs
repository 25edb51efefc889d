use lambda_http::lambda_runtime::{self, service_fn};
use lambda_http::Error;
use payment_attempts::runtime;
use publisher::Publisher;

#[tokio::main]
async fn main() -> Result<(), Error> {
    runtime::init_logging();
    let config = runtime::sdk_config(runtime::config_loader()).await?;
    let publisher: &'static Publisher =
        Box::leak(Box::new(Publisher::from_env(aws_sdk_eventbridge::Client::new(&config))?));
    lambda_runtime::run_concurrent(service_fn(move |event| publisher::handle(publisher, event))).await
}
