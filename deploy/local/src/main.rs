//! `authbooks-local [all | auth | books]`: the whole stack on one port (default), or one service
//! alone with its own settings, as its own binary would run it (the tests start processes so).

use shared::server::exit;

#[tokio::main]
async fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    match mode.as_str() {
        "all" => {
            shared::telemetry::init("warn");
            let config = authbooks_local::StackConfig::from_env().unwrap_or_else(|e| exit(2, e));
            authbooks_local::run(config)
                .await
                .unwrap_or_else(|e| exit(1, e));
        }
        "auth" => {
            shared::telemetry::init("info");
            let settings = auth_service::Settings::from_env().unwrap_or_else(|e| exit(2, e));
            let app = auth_service::Application::build(settings)
                .await
                .unwrap_or_else(|e| exit(1, format!("auth-service failed to start: {e}")));
            app.run_until_stopped().await.unwrap_or_else(|e| exit(1, e));
        }
        "books" => {
            shared::telemetry::init("info");
            let settings = books_service::Settings::from_env().unwrap_or_else(|e| exit(2, e));
            let app = books_service::Application::build(settings)
                .await
                .unwrap_or_else(|e| match e {
                    books_service::startup::StartupError::Config(e) => exit(2, e),
                    e => exit(1, format!("books-service failed to start: {e}")),
                });
            app.run_until_stopped().await.unwrap_or_else(|e| exit(1, e));
        }
        _ => exit(2, "usage: authbooks-local [all | auth | books]"),
    }
}
