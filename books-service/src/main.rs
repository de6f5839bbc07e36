use books_service::{Application, Settings};

#[tokio::main]
async fn main() {
    shared::telemetry::init("info");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("{err}");
            std::process::exit(2);
        }
    };
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(err) => {
            eprintln!("books-service failed to start: {err}");
            std::process::exit(1);
        }
    };
    if let Err(err) = app.run_until_stopped().await {
        eprintln!("books-service stopped with an error: {err}");
        std::process::exit(1);
    }
}
