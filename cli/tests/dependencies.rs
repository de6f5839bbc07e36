//! The CLI is a client: no server crate may reach its build, however `shared` grows.

use std::process::Command;

/// The servers' crates: a name equal to one of these, or one of these followed by `-` or `_`
/// (`actix-web`, `actix-http`, `diesel_migrations`...).
const SERVER_CRATES: &[&str] = &[
    "actix",
    "diesel",
    "redis",
    "argon2",
    "libsqlite3-sys",
    "pq-sys",
    "utoipa",
];

fn is_server_crate(name: &str) -> bool {
    SERVER_CRATES.iter().any(|server| {
        name.strip_prefix(server)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(['-', '_']))
    })
}

#[test]
fn no_server_crate_in_the_normal_dependency_tree() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "-p",
            "authbooks-cli",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "cargo tree failed:\n{stderr}");
    let tree = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    // Guards against reading an empty or reshaped output as a pass.
    for expected in ["authbooks-cli", "shared", "reqwest", "tokio"] {
        assert!(names.contains(&expected), "{expected} not in:\n{tree}");
    }
    let mut servers: Vec<&str> = names.into_iter().filter(|n| is_server_crate(n)).collect();
    servers.sort_unstable();
    servers.dedup();
    assert!(
        servers.is_empty(),
        "the CLI links server crates {servers:?}; `cargo tree -p authbooks-cli -e normal -i <crate>` shows why"
    );
}

#[test]
fn the_check_recognises_server_crates() {
    for name in [
        "actix-web",
        "actix-http",
        "diesel",
        "diesel_migrations",
        "redis",
        "argon2",
    ] {
        assert!(is_server_crate(name), "{name}");
    }
    for name in ["reqwest", "tokio", "shared", "serde", "rediss", "actixy"] {
        assert!(!is_server_crate(name), "{name}");
    }
}
