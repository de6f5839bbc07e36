//! `authbooks`: the command-line client of the platform, over `shared::client`. See `USAGE` in
//! `args.rs` (printed by `authbooks --help`) for the commands, files and exit codes.

mod args;
mod output;
mod store;
mod terminal;

use std::collections::BTreeMap;
use std::process::ExitCode;

use shared::client::{BookInput, Client, Error, SessionEnd, SessionInfo, User, UserQuery};

use args::{Cli, Command, UsageError, USAGE};
use store::{Saved, TokenStore};
use terminal::Progress;

/// The exit codes of `USAGE`; scripts rely on them, so they never change meaning.
mod exit {
    pub const OTHER: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AUTH: u8 = 3;
    pub const NOT_FOUND: u8 = 4;
    pub const CONFLICT: u8 = 5;
    pub const FORBIDDEN: u8 = 6;
    pub const INVALID: u8 = 7;
    pub const UNAVAILABLE: u8 = 8;
}

const DEFAULT_URL: &str = "http://127.0.0.1:8080";

fn main() -> ExitCode {
    let raw: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| a.into_string())
        .collect();
    let json_errors = raw
        .as_ref()
        .is_ok_and(|args| args.iter().any(|a| a == "--json"));
    let outcome = match raw {
        Err(_) => Err(Failure::usage("arguments must be valid UTF-8")),
        Ok(raw) => match args::parse(raw) {
            Err(UsageError(message)) => Err(Failure::usage(message)),
            Ok(cli) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Failure::other(format!("cannot start: {e}")))
                .and_then(|runtime| runtime.block_on(run(cli))),
        },
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(json_errors);
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let Cli { url, json, command } = cli;
    if command == Command::Help {
        print!("{USAGE}");
        return Ok(());
    }
    let store = TokenStore::locate().map_err(Failure::other)?;
    match command {
        Command::Login { username } => login(&store, url, username, json).await,
        Command::Register { username } => register(url, username, json).await,
        Command::Logout { all } => logout(&store, url, all, json).await,
        command => {
            let (client, saved) = logged_in(&store, url)?;
            let result = authenticated(&client, command, json).await;
            persist(&store, &client, saved, result.as_ref().err())?;
            result
        }
    }
}

/// `--url`, else `$AUTHBOOKS_URL`, else the stored login's URL, else the local stack.
fn base_url(flag: Option<String>, stored: Option<&str>) -> String {
    flag.or_else(|| {
        std::env::var("AUTHBOOKS_URL")
            .ok()
            .filter(|u| !u.is_empty())
    })
    .or_else(|| stored.map(str::to_owned))
    .unwrap_or_else(|| DEFAULT_URL.to_owned())
}

/// A client carrying the stored session, which must belong to the URL in use.
fn logged_in(store: &TokenStore, url: Option<String>) -> Result<(Client, Saved), Failure> {
    let saved = store
        .load()
        .map_err(Failure::other)?
        .ok_or(Failure::from(Error::LoggedOut(SessionEnd::NotLoggedIn)))?;
    let client = Client::new(&base_url(url, Some(&saved.url)))?;
    if client.base_url() != saved.url {
        return Err(Failure {
            message: format!(
                "not logged in at {}: the stored login is for {}",
                client.base_url(),
                saved.url
            ),
            ..Failure::from(Error::LoggedOut(SessionEnd::NotLoggedIn))
        });
    }
    Ok((client.with_session(saved.session.clone()), saved))
}

/// Stores what the command did to the session: a refreshed pair, or none when it ended.
fn persist(
    store: &TokenStore,
    client: &Client,
    saved: Saved,
    error: Option<&Failure>,
) -> Result<(), Failure> {
    let written = match client.session() {
        // The server ended the session without telling the client's refresh logic.
        _ if error.is_some_and(|e| e.error == "token_revoked") => store.delete(),
        Some(session) if session == saved.session => Ok(()),
        Some(session) => store.save(&Saved { session, ..saved }),
        None => store.delete(),
    };
    match (written, error) {
        (Ok(()), _) => Ok(()),
        // The command's own error matters more; still say the tokens were not stored.
        (Err(problem), Some(_)) => {
            eprintln!("authbooks: {problem}");
            Ok(())
        }
        (Err(problem), None) => Err(Failure::other(problem)),
    }
}

async fn login(
    store: &TokenStore,
    url: Option<String>,
    username: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    // A damaged file is about to be replaced, so only its URL is of interest.
    let previous = store.load().ok().flatten();
    let client = Client::new(&base_url(url, previous.as_ref().map(|s| s.url.as_str())))?;
    let username = username_from(username, "login")?;
    let password =
        terminal::read_password(&format!("Password for {username}: ")).map_err(Failure::input)?;
    let first = {
        let _progress = Progress::start("logging in…");
        client.login(&username, &password).await
    };
    match first {
        Ok(()) => {}
        Err(Error::MfaRequired { mfa_token, .. }) => second_factor(&client, &mfa_token).await?,
        Err(err) => return Err(err.into()),
    }
    let Some(session) = client.session() else {
        return Err(Failure::from(Error::LoggedOut(SessionEnd::NotLoggedIn)));
    };
    let saved = Saved {
        url: client.base_url().to_owned(),
        username: username.clone(),
        session,
    };
    store.save(&saved).map_err(Failure::other)?;
    let me = client.me().await.map_err(Failure::from);
    if let Ok(user) = &me {
        let canonical = Saved {
            username: user.username.clone(),
            ..saved.clone()
        };
        persist(store, &client, canonical, None)?;
    } else {
        persist(store, &client, saved, me.as_ref().err())?;
    }
    let user = me?;
    if json {
        output::json(&user);
    } else {
        let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
        println!(
            "Logged in to {} as {} (roles: {}).",
            client.base_url(),
            output::clean(&user.username),
            roles.join(", ")
        );
    }
    Ok(())
}

/// How many codes a person at a terminal may type before giving up (the server takes 5 per
/// login).
const CODE_TRIES: u32 = 3;

/// The second step of a login: a one-time code for `mfa_token`, from the terminal (asked again
/// when wrong) or from the next line of stdin.
async fn second_factor(client: &Client, mfa_token: &str) -> Result<(), Failure> {
    let mut tries = 0;
    loop {
        tries += 1;
        let code = terminal::read_code("One-time code (or a recovery code): ")
            .map_err(Failure::code_input)?;
        let result = {
            let _progress = Progress::start("checking the code…");
            client.login_mfa(mfa_token, &code).await
        };
        match result {
            Err(Error::InvalidMfaCode(message))
                if terminal::interactive() && tries < CODE_TRIES =>
            {
                eprintln!("authbooks: {}; try again", output::clean(&message));
            }
            other => return other.map_err(Failure::from),
        }
    }
}

async fn register(
    url: Option<String>,
    username: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    let client = Client::new(&base_url(url, None))?;
    let username = username_from(username, "register")?;
    let password = terminal::read_password(&format!("New password for {username}: "))
        .map_err(Failure::input)?;
    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        let again = terminal::read_password("Repeat it: ").map_err(Failure::input)?;
        if again != password {
            return Err(Failure::usage("the passwords differ"));
        }
    }
    let user = {
        let _progress = Progress::start("creating the account…");
        client.register(&username, &password).await?
    };
    if json {
        output::json(&user);
    } else {
        println!(
            "Registered {} (id {}). Log in with: authbooks login {}",
            output::clean(&user.username),
            output::clean(&user.id),
            output::clean(&user.username)
        );
    }
    Ok(())
}

fn username_from(given: Option<String>, command: &str) -> Result<String, Failure> {
    let name = match given {
        Some(name) => name,
        None => terminal::prompt("Username: ")
            .map_err(Failure::input)?
            .ok_or_else(|| {
                Failure::usage(format!(
                    "{command} needs a USERNAME when stdin is not a terminal"
                ))
            })?,
    };
    let name = name.trim().to_owned();
    if name.is_empty() {
        return Err(Failure::usage(format!("{command} needs a USERNAME")));
    }
    Ok(name)
}

async fn logout(
    store: &TokenStore,
    url: Option<String>,
    all: bool,
    json: bool,
) -> Result<(), Failure> {
    let stored = match store.load() {
        Ok(stored) => stored,
        Err(problem) => {
            eprintln!("authbooks: {problem}; deleting it");
            store.delete().map_err(Failure::other)?;
            None
        }
    };
    if stored.is_none() {
        if json {
            output::json(&serde_json::json!({ "logged_out": true, "was_logged_in": false }));
        } else {
            println!("Not logged in.");
        }
        return Ok(());
    }
    let (client, saved) = logged_in(store, url)?;
    let result = if all {
        client.logout_all().await
    } else {
        client.logout().await
    }
    .map_err(Failure::from);
    persist(store, &client, saved, result.as_ref().err())?;
    result?;
    if json {
        output::json(&serde_json::json!({ "logged_out": true, "was_logged_in": true }));
    } else if all {
        println!("Logged out everywhere.");
    } else {
        println!("Logged out.");
    }
    Ok(())
}

/// A user named by a username or an id: an id-shaped argument is tried as an id first, then as
/// a name (a name could look like an id).
async fn resolve_user(client: &Client, given: &str) -> Result<User, Error> {
    if looks_like_id(given) {
        match client.user(given).await {
            Err(Error::NotFound(_)) => {}
            found => return found,
        }
    }
    client
        .user_named(given)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no user named {given:?}")))
}

/// A user id as the services make them: a UUID in its hyphenated form.
fn looks_like_id(text: &str) -> bool {
    text.len() == 36
        && text.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The commands that need the stored session.
async fn authenticated(client: &Client, command: Command, json: bool) -> Result<(), Failure> {
    let books = client.books();
    match command {
        Command::Whoami => {
            let user = client.me().await?;
            if json {
                output::json(&user);
            } else {
                output::user(&user);
                println!("  server:  {}", client.base_url());
            }
        }
        Command::BooksList { query, all } => {
            let (items, next_cursor) = if all {
                (books.list_all(&query).await?, None)
            } else {
                let page = books.list(&query).await?;
                (page.items, page.next_cursor)
            };
            if json {
                output::json(&serde_json::json!({ "items": items, "next_cursor": next_cursor }));
            } else {
                output::books(&items);
                if let Some(cursor) = next_cursor {
                    eprintln!("More: authbooks books list --cursor {cursor} (or --all)");
                }
            }
        }
        Command::BooksGet { id } => show_book(&books.get(&id).await?, json, None),
        Command::BooksAdd { book } => show_book(&books.create(&book).await?, json, Some("Added")),
        Command::BooksEdit {
            id,
            changes,
            if_match,
        } => {
            let current = books.get(&id).await?;
            let mut book = BookInput::from(&current);
            changes.apply(&mut book);
            // Someone else's write between our read and this one is refused, not overwritten.
            let version = if_match.unwrap_or(current.version);
            let saved = books.replace(&id, &book, Some(version)).await?;
            show_book(&saved, json, Some("Saved"));
        }
        Command::BooksRm { id, if_match } => {
            books.delete(&id, if_match).await?;
            if json {
                output::json(&serde_json::json!({ "deleted": id }));
            } else {
                println!("Deleted {}.", output::clean(&id));
            }
        }
        Command::Sessions => {
            let sessions = client.sessions().await?;
            if json {
                output::json(&sessions);
            } else {
                output::sessions(&sessions);
            }
        }
        Command::SessionsEnd { id } => {
            // Whether it is this session: then the stored tokens die with it.
            let current = client
                .sessions()
                .await?
                .iter()
                .any(|s| s.current && s.id == id);
            client.end_session(&id).await?;
            if current {
                client.forget();
            }
            if json {
                output::json(&serde_json::json!({ "ended": id, "current": current }));
            } else if current {
                println!(
                    "Ended session {}: it was this one, so you are logged out.",
                    output::clean(&id)
                );
            } else {
                println!("Ended session {}.", output::clean(&id));
            }
        }
        Command::MfaEnable => mfa_enable(client, json).await?,
        Command::MfaDisable => {
            let code = terminal::read_code("One-time code (or a recovery code): ")
                .map_err(Failure::code_input)?;
            client.remove_totp(&code).await?;
            if json {
                output::json(&serde_json::json!({ "mfa": false }));
            } else {
                println!("Second factor removed: logins need only the password again.");
            }
        }
        Command::UsersFind { name, query, page } => {
            let (items, next_cursor) = if page {
                let page = client.users(&query).await?;
                (page.items, page.next_cursor)
            } else {
                // Every page, in the fewest requests the server allows.
                let query = UserQuery {
                    limit: Some(100),
                    ..query.clone()
                };
                (client.all_users(&query).await?, None)
            };
            if let (Some(name), true) = (&name, items.is_empty()) {
                return Err(Error::NotFound(format!("no user named {name:?}")).into());
            }
            if json {
                output::json(&serde_json::json!({ "items": items, "next_cursor": next_cursor }));
            } else {
                output::users(&items);
                if let Some(cursor) = next_cursor {
                    let limit = query
                        .limit
                        .map(|n| format!("--limit {n} "))
                        .unwrap_or_default();
                    eprintln!("More: authbooks admin users find {limit}--cursor {cursor}");
                }
            }
        }
        Command::UsersShow { user } => {
            let user = resolve_user(client, &user).await?;
            if json {
                output::json(&user);
            } else {
                output::user(&user);
            }
        }
        Command::UsersDisable { user } => {
            let target = resolve_user(client, &user).await?;
            let user = client.disable_user(&target.id).await?;
            if json {
                output::json(&user);
            } else {
                println!(
                    "Disabled {}: their sessions were ended, and login and refresh are refused \
                     until `authbooks admin users enable`.",
                    output::clean(&user.username)
                );
            }
        }
        Command::UsersEnable { user } => {
            let target = resolve_user(client, &user).await?;
            let user = client.enable_user(&target.id).await?;
            if json {
                output::json(&user);
            } else {
                println!(
                    "Enabled {}: they can log in again (their old sessions stay ended).",
                    output::clean(&user.username)
                );
            }
        }
        Command::UsersSessions { user, end } => {
            let user = resolve_user(client, &user).await?;
            let sessions = client.user_sessions(&user.id).await?;
            if end {
                client.end_user_sessions(&user.id).await?;
                // The administrator ended their own session along with the others.
                if sessions.iter().any(|s| s.current) {
                    client.forget();
                }
            }
            user_sessions(&user, &sessions, end, json);
        }
        Command::Audit { user, mut query } => {
            query.user = match user {
                // An id is used as it is: it may be a client's, or a deleted user's.
                Some(given) if looks_like_id(&given) => Some(given),
                Some(name) => Some(resolve_user(client, &name).await?.id),
                None => None,
            };
            let page = client.audit(&query).await?;
            if json {
                output::json(&page);
            } else {
                output::audit(&page.items);
                if let Some(cursor) = page.next_cursor {
                    eprintln!("Older events: the same command with --cursor {cursor}");
                }
            }
        }
        Command::AdminRoles { user, roles } => {
            let target = resolve_user(client, &user).await?;
            let user = client.set_roles(&target.id, &roles).await?;
            if json {
                output::json(&user);
            } else {
                let names: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
                println!(
                    "{} now has the roles {}; their sessions were ended.",
                    output::clean(&user.username),
                    names.join(", ")
                );
            }
        }
        Command::ClientsCreate { name, scopes } => {
            let created = client.create_client(&name, &scopes).await?;
            if json {
                output::json(&created);
            } else {
                output::service_client(&created);
                println!("Keep the secret now: it is not shown again.");
            }
        }
        Command::ClientsList => {
            let clients = client.clients().await?;
            if json {
                output::json(&clients);
            } else {
                output::service_clients(&clients);
            }
        }
        Command::ClientsRotate { id } => {
            let rotated = client.rotate_client_secret(&id).await?;
            if json {
                output::json(&rotated);
            } else {
                output::service_client(&rotated);
                println!("The old secret and every token issued with it no longer work.");
            }
        }
        Command::ClientsRm { id } => {
            client.delete_client(&id).await?;
            if json {
                output::json(&serde_json::json!({ "deleted": id }));
            } else {
                println!("Deleted; every token the client held is refused.");
            }
        }
        // Dispatched in `run` before a session is loaded.
        Command::Help
        | Command::Login { .. }
        | Command::Register { .. }
        | Command::Logout { .. } => print!("{USAGE}"),
    }
    Ok(())
}

/// `mfa enable`: start, show the secret, read a code from the app, confirm, show the
/// recovery codes.
async fn mfa_enable(client: &Client, json: bool) -> Result<(), Failure> {
    let enrolment = client.start_totp().await?;
    if json {
        // A line of its own, before the code is read: a script needs the secret to make one.
        output::json(&serde_json::json!({
            "secret": enrolment.secret,
            "otpauth_uri": enrolment.otpauth_uri,
        }));
    } else {
        println!("Add this account to an authenticator app (TOTP: SHA-1, 6 digits, 30 s):");
        println!("  secret: {}", output::clean(&enrolment.secret));
        println!("  URI:    {}", output::clean(&enrolment.otpauth_uri));
        println!("Nothing changes for your logins until you give a code from the app.");
    }
    let mut tries = 0;
    let codes = loop {
        tries += 1;
        let code = terminal::read_code("Code from the app: ").map_err(Failure::code_input)?;
        match client.confirm_totp(&code).await {
            Ok(codes) => break codes,
            Err(Error::InvalidMfaCode(message))
                if terminal::interactive() && tries < CODE_TRIES =>
            {
                eprintln!("authbooks: {}; try again", output::clean(&message));
            }
            Err(err) => return Err(err.into()),
        }
    };
    if json {
        output::json(&serde_json::json!({ "mfa": true, "recovery_codes": codes }));
    } else {
        println!("Second factor on: every login now asks for a code from the app.");
        println!("Recovery codes, each usable once instead of a code (shown only now):");
        for code in &codes {
            println!("  {}", output::clean(code));
        }
    }
    Ok(())
}

fn user_sessions(user: &User, sessions: &[SessionInfo], ended: bool, json: bool) {
    if json {
        if ended {
            output::json(&serde_json::json!({ "user": user.id, "ended": sessions }));
        } else {
            output::json(&sessions);
        }
        return;
    }
    let name = output::clean(&user.username);
    if !ended {
        output::sessions(sessions);
    } else if sessions.is_empty() {
        println!("{name} had no live session; any started meanwhile was ended too.");
    } else {
        println!("Ended every session of {name}:");
        output::sessions(sessions);
        if sessions.iter().any(|s| s.current) {
            println!("That included this one (*): you are logged out.");
        }
    }
}

fn show_book(book: &shared::client::Book, json: bool, done: Option<&str>) {
    if json {
        output::json(book);
        return;
    }
    if let Some(done) = done {
        println!("{done}:");
    }
    output::book(book);
}

/// A failed command: its exit code and what to tell the user.
#[derive(Debug)]
struct Failure {
    code: u8,
    /// A stable snake_case name: the API's error code, `logged_out`, `usage`, ...
    error: &'static str,
    message: String,
    fields: BTreeMap<String, String>,
    reason: Option<&'static str>,
    hint: Option<String>,
}

impl Failure {
    fn new(code: u8, error: &'static str, message: impl Into<String>) -> Self {
        Failure {
            code,
            error,
            message: message.into(),
            fields: BTreeMap::new(),
            reason: None,
            hint: None,
        }
    }

    fn usage(message: impl Into<String>) -> Self {
        Failure {
            hint: Some("see `authbooks --help`".into()),
            ..Failure::new(exit::USAGE, "usage", message)
        }
    }

    fn other(message: impl Into<String>) -> Self {
        Failure::new(exit::OTHER, "local", message)
    }

    /// Reading a one-time code failed; none on stdin is a usage error.
    fn code_input(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            Failure::usage(format!(
                "{err}: a second factor is needed; pipe the code in on the line after the \
                 password, or run in a terminal"
            ))
        } else {
            Failure::other(format!("cannot read the input: {err}"))
        }
    }

    /// Reading the terminal or stdin failed; no input at all is a usage error.
    fn input(err: std::io::Error) -> Self {
        if err.kind() == std::io::ErrorKind::UnexpectedEof {
            Failure::usage(format!("{err}: pipe the password in, or run in a terminal"))
        } else {
            Failure::other(format!("cannot read the input: {err}"))
        }
    }

    fn report(&self, json: bool) {
        if json {
            let mut body = serde_json::json!({ "error": self.error, "message": self.message });
            if !self.fields.is_empty() {
                body["fields"] = serde_json::json!(self.fields);
            }
            if let Some(reason) = self.reason {
                body["reason"] = reason.into();
            }
            eprintln!("{body}");
            return;
        }
        eprintln!("authbooks: {}", output::clean(&self.message));
        for (field, problem) in &self.fields {
            eprintln!("  {}: {}", output::clean(field), output::clean(problem));
        }
        if let Some(hint) = &self.hint {
            eprintln!("  ({hint})");
        }
    }
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        const LOG_IN: &str = "run `authbooks login`";
        let (code, hint) = match &err {
            Error::LoggedOut(_)
            | Error::TokenExpired(_)
            | Error::TokenRevoked(_)
            | Error::InvalidToken(_)
            | Error::MissingToken(_)
            | Error::WrongTokenType(_)
            | Error::RefreshTokenReused(_) => (exit::AUTH, Some(LOG_IN.to_owned())),
            Error::InvalidCredentials(_) | Error::InvalidMfaCode(_) => (exit::AUTH, None),
            Error::MfaRequired { .. } => (
                exit::AUTH,
                Some("this account has a second factor: log in with a one-time code".into()),
            ),
            Error::AccountDisabled(_) => (exit::FORBIDDEN, None),
            Error::FreshTokenRequired(_) => (
                exit::AUTH,
                Some("this needs a password login, not a refreshed session: run `authbooks login` and try again".into()),
            ),
            Error::NotFound(_) => (exit::NOT_FOUND, None),
            Error::Conflict(_) => (exit::CONFLICT, None),
            Error::PreconditionFailed(_) => (
                exit::CONFLICT,
                Some("someone changed it since it was read: get it again, then retry".into()),
            ),
            Error::InsufficientRole(_) | Error::CsrfFailed(_) => (exit::FORBIDDEN, None),
            Error::BadRequest(_) | Error::PayloadTooLarge(_) | Error::ValidationFailed { .. } => {
                (exit::INVALID, None)
            }
            Error::RateLimited { retry_after, .. } => (
                exit::UNAVAILABLE,
                retry_after.map(|s| format!("try again in {s} s")),
            ),
            Error::Transport(_) | Error::Unavailable(_) => {
                (exit::UNAVAILABLE, Some("try again later".into()))
            }
            Error::InvalidUrl(_) => (exit::USAGE, None),
            Error::Internal(_) | Error::MethodNotAllowed(_) | Error::Unexpected { .. } => {
                (exit::OTHER, None)
            }
        };
        Failure {
            code,
            error: err.kind(),
            message: err.to_string(),
            fields: match &err {
                Error::ValidationFailed { fields, .. } => fields.clone(),
                _ => BTreeMap::new(),
            },
            reason: match &err {
                Error::LoggedOut(end) => Some(end.as_str()),
                _ => None,
            },
            hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyphenated_uuids_look_like_ids() {
        assert!(looks_like_id("0190a3f2-7b1c-7d2e-8f00-1234567890ab"));
        assert!(looks_like_id("0190A3F2-7B1C-7D2E-8F00-1234567890AB"));
        for name in [
            "alice",
            "0190a3f27b1c7d2e8f001234567890ab",
            "0190a3f2-7b1c-7d2e-8f00-1234567890ag",
            "0190a3f2_7b1c-7d2e-8f00-1234567890ab",
            "0190a3f2-7b1c-7d2e-8f00-1234567890abc",
            "",
        ] {
            assert!(!looks_like_id(name), "{name}");
        }
    }

    #[test]
    fn second_factor_errors_are_authentication_failures_and_disabled_is_forbidden() {
        for (err, code) in [
            (Error::InvalidMfaCode("wrong".into()), exit::AUTH),
            (
                Error::MfaRequired {
                    message: "code".into(),
                    mfa_token: "t".into(),
                },
                exit::AUTH,
            ),
            (Error::AccountDisabled("disabled".into()), exit::FORBIDDEN),
        ] {
            let failure = Failure::from(err.clone());
            assert_eq!(failure.code, code, "{err:?}");
            assert_eq!(failure.error, err.kind());
        }
    }
}
