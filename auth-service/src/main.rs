use auth_service::{Application, Settings};
use shared::server::exit;

const USAGE: &str = "usage: auth-service [serve | keys rotate [--emergency]]";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let settings = Settings::from_env().unwrap_or_else(|err| exit(2, err));
    match args.as_slice() {
        [] | ["serve"] => serve(settings).await,
        ["keys", "rotate"] => {
            let report =
                auth_service::keys::rotate(&settings.keys_dir, settings.key_activation_delay)
                    .unwrap_or_else(|err| exit(1, format!("key rotation failed: {err}")));
            println!("{report}");
        }
        ["keys", "rotate", "--emergency"] => {
            let report = auth_service::keys::rotate_emergency(
                &settings.keys_dir,
                settings.key_activation_delay,
            )
            .unwrap_or_else(|err| exit(1, format!("emergency key rotation failed: {err}")));
            println!("{report}");
        }
        _ => exit(2, USAGE),
    }
}

async fn serve(settings: Settings) {
    shared::telemetry::init("info");
    let app = Application::build(settings)
        .await
        .unwrap_or_else(|err| exit(1, format!("auth-service failed to start: {err}")));
    if let Err(err) = app.run_until_stopped().await {
        exit(1, format!("auth-service stopped with an error: {err}"));
    }
}
