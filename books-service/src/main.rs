use books_service::startup::StartupError;
use books_service::{Application, Settings};
use shared::server::exit;

#[tokio::main]
async fn main() {
    shared::telemetry::init("info");
    let settings = Settings::from_env().unwrap_or_else(|err| exit(2, err));
    let app = Application::build(settings)
        .await
        .unwrap_or_else(|err| match err {
            StartupError::Config(err) => exit(2, err),
            err => exit(1, format!("books-service failed to start: {err}")),
        });
    if let Err(err) = app.run_until_stopped().await {
        exit(1, format!("books-service stopped with an error: {err}"));
    }
}
