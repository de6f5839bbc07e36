//! The one-command local stack: auth-service and books-service in one process on the embedded
//! defaults (SQLite files and keys under a data directory, one in-process revocation store
//! shared by both), behind one port with the gateway's paths, and the browser page at `/`.

pub mod proxy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::web;
use shared::revocation::{MemoryRevocations, RevocationCheck};

pub struct StackConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
}

impl StackConfig {
    /// `LISTEN_ADDR` (default `127.0.0.1:8080`) and `AUTHBOOKS_DATA_DIR` (default `./data`).
    pub fn from_env() -> Result<Self, String> {
        let listen = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
        Ok(Self {
            listen: listen.parse().map_err(|_| {
                format!("invalid configuration: LISTEN_ADDR: expected HOST:PORT, got {listen:?}")
            })?,
            data_dir: std::env::var("AUTHBOOKS_DATA_DIR")
                .unwrap_or_else(|_| "data".into())
                .into(),
        })
    }
}

/// The process environment with the stack's own settings on top.
fn settings_vars(overrides: &[(&str, String)]) -> HashMap<String, String> {
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    // One store in this process; a REDIS_URL or DATABASE_URL meant for a service would split it.
    vars.remove("REDIS_URL");
    vars.remove("DATABASE_URL");
    for (key, value) in overrides {
        vars.insert((*key).to_owned(), value.clone());
    }
    vars
}

/// Starts everything, prints how to use it, and serves until Ctrl-C.
pub async fn run(config: StackConfig) -> Result<(), String> {
    // It holds the SQLite files and the signing keys: this user's alone when we create it.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&config.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", config.data_dir.display()))?;
    let data = config.data_dir.display().to_string();
    let first_start = !config.data_dir.join("auth.db").exists();
    let configured_admin = std::env::var("AUTH_BOOTSTRAP_ADMIN_USERNAME").is_ok();
    let admin_password =
        (first_start && !configured_admin).then(|| uuid::Uuid::new_v4().simple().to_string());

    // Bound first: its URL is auth-service's public URL, hence the issuer and the base of the
    // discovery documents (clients reach auth-service through it).
    let front_listener = std::net::TcpListener::bind(config.listen)
        .map_err(|e| format!("LISTEN_ADDR: cannot bind {}: {e}", config.listen))?;
    let front_port = front_listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .port();
    let revocations = Arc::new(MemoryRevocations::new());
    let mut auth_overrides = vec![
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("DATABASE_URL", format!("sqlite://{data}/auth.db")),
        ("AUTH_KEYS_DIR", format!("{data}/keys")),
        ("AUTH_TRUSTED_PROXIES", "127.0.0.1".to_owned()),
    ];
    if std::env::var("AUTH_PUBLIC_URL").is_err() {
        auth_overrides.push(("AUTH_PUBLIC_URL", format!("http://127.0.0.1:{front_port}")));
    }
    if std::env::var("AUTH_COOKIE_SECURE").is_err() {
        // Plain http on localhost: browsers drop Secure cookies there.
        auth_overrides.push(("AUTH_COOKIE_SECURE", "false".to_owned()));
    }
    if let Some(password) = &admin_password {
        auth_overrides.push(("AUTH_BOOTSTRAP_ADMIN_USERNAME", "admin".to_owned()));
        auth_overrides.push(("AUTH_BOOTSTRAP_ADMIN_PASSWORD", password.clone()));
    }
    let auth_settings = auth_service::Settings::from_vars(settings_vars(&auth_overrides))
        .map_err(|e| e.to_string())?;
    let issuer = auth_settings.verifier.issuer.clone();
    let auth = auth_service::Application::build_with(auth_settings, Some(revocations.clone()))
        .await
        .map_err(|e| format!("auth-service failed to start: {e}"))?;
    let auth_url = format!("http://127.0.0.1:{}", auth.port());

    let books_settings = books_service::Settings::from_vars(settings_vars(&[
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("JWT_ISSUER", issuer.clone()),
        ("DATABASE_URL", format!("sqlite://{data}/books.db")),
        ("JWKS_URL", format!("{auth_url}/.well-known/jwks.json")),
    ]))
    .map_err(|e| e.to_string())?;
    let books = books_service::Application::build_with(
        books_settings,
        Some(revocations as Arc<dyn RevocationCheck>),
    )
    .await
    .map_err(|e| format!("books-service failed to start: {e}"))?;

    let upstreams = web::Data::new(proxy::Upstreams {
        auth: auth_url,
        books: format!("http://127.0.0.1:{}", books.port()),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| e.to_string())?,
    });
    let front = shared::server::serve_on(
        "authbooks-local",
        front_listener,
        None,
        move |cfg: &mut web::ServiceConfig| {
            cfg.app_data(upstreams.clone())
                .route("/readyz", web::get().to(proxy::ready))
                .route("/healthz", web::get().to(shared::server::healthz))
                .configure(proxy::page_routes)
                .route("/{tail:.*}", web::route().to(proxy::forward));
        },
    )?;
    print_banner(front.port, &config.data_dir, admin_password.as_deref());

    let (auth, books, front) = tokio::join!(
        auth.run_until_stopped(),
        books.run_until_stopped(),
        front.server
    );
    auth.and(books).and(front).map_err(|e| e.to_string())
}

fn print_banner(port: u16, data_dir: &std::path::Path, admin_password: Option<&str>) {
    let base = format!("http://127.0.0.1:{port}");
    println!("authbooks is running at {base} (Ctrl-C stops it)");
    println!("  page:  {base}/ (open it in a browser)");
    println!("  auth:  {base}/auth/login, {base}/auth/register, {base}/.well-known/jwks.json");
    println!("  books: {base}/books");
    println!(
        "  data:  {} (SQLite files and signing keys; revocations live in this process)",
        data_dir.display()
    );
    let password = match admin_password {
        Some(password) => {
            println!("First start: created user 'admin' with password {password}");
            println!("  (shown only now; it is not stored anywhere in clear)");
            password
        }
        None => "<your password>",
    };
    println!("Try:");
    println!(
        "  TOKEN=$(curl -s {base}/auth/login -H 'content-type: application/json' \\\n    -d '{{\"username\":\"admin\",\"password\":\"{password}\"}}' | sed 's/.*\"access_token\":\"\\([^\"]*\\)\".*/\\1/')"
    );
    println!(
        "  curl -s {base}/books -H \"Authorization: Bearer $TOKEN\" -H 'content-type: application/json' \\\n    -d '{{\"title\":\"Dune\",\"author\":\"Frank Herbert\"}}'"
    );
}
