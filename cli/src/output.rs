//! What the commands print: JSON for scripts (`--json`), tables and short lines for people.

use serde::Serialize;
use shared::client::{AuditEvent, Book, ServiceClient, SessionInfo, User};

/// Prints `value` as one line of JSON.
pub fn json(value: &impl Serialize) {
    match serde_json::to_string(value) {
        Ok(line) => println!("{line}"),
        // Only a map with non-string keys fails, and none of ours has one.
        Err(e) => eprintln!("authbooks: cannot encode the answer as JSON: {e}"),
    }
}

/// Server text shown on a terminal: control characters (escape sequences a stored title could
/// carry) are replaced.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

pub fn user(user: &User) {
    let roles: Vec<&str> = user.roles.iter().map(|r| r.as_str()).collect();
    println!("{}", clean(&user.username));
    println!("  id:      {}", clean(&user.id));
    println!("  roles:   {}", roles.join(", "));
    if let Some(created_at) = &user.created_at {
        println!("  created: {}", clean(created_at));
    }
    println!("  mfa:     {}", if user.mfa { "on" } else { "off" });
    if user.disabled {
        println!("  status:  disabled (no login, no refresh)");
    }
}

/// A table of users, for `admin users find`.
pub fn users(users: &[User]) {
    if users.is_empty() {
        println!("No users.");
        return;
    }
    let rows = users
        .iter()
        .map(|u| {
            let roles: Vec<&str> = u.roles.iter().map(|r| r.as_str()).collect();
            vec![
                clean(&u.id),
                cell(&u.username),
                roles.join(","),
                if u.mfa { "on" } else { "off" }.to_owned(),
                if u.disabled { "disabled" } else { "active" }.to_owned(),
                u.created_at.as_deref().map(time).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &["ID", "USERNAME", "ROLES", "MFA", "STATUS", "CREATED (UTC)"],
        rows,
    );
}

/// A table of live sessions; `*` marks the one of the token that asked.
pub fn sessions(sessions: &[SessionInfo]) {
    if sessions.is_empty() {
        println!("No live sessions.");
        return;
    }
    let rows = sessions
        .iter()
        .map(|s| {
            vec![
                if s.current { "*" } else { "" }.to_owned(),
                clean(&s.id),
                time(&s.created_at),
                s.last_used_at.as_deref().map(time).unwrap_or_default(),
                s.expires_at.as_deref().map(time).unwrap_or_default(),
                s.ip.as_deref().map(clean).unwrap_or_default(),
                s.user_agent.as_deref().map(cell).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "",
            "ID",
            "LOGIN (UTC)",
            "LAST REFRESH",
            "EXPIRES",
            "IP",
            "CLIENT",
        ],
        rows,
    );
}

/// A table of audit events.
pub fn audit(events: &[AuditEvent]) {
    if events.is_empty() {
        println!("No events.");
        return;
    }
    let optional = |value: &Option<String>| value.as_deref().map(clean).unwrap_or_default();
    let rows = events
        .iter()
        .map(|e| {
            vec![
                time(&e.at),
                clean(&e.kind),
                clean(&e.outcome),
                optional(&e.actor),
                optional(&e.subject),
                optional(&e.ip),
                e.detail.as_deref().map(cell).unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "AT (UTC)", "TYPE", "OUTCOME", "ACTOR", "SUBJECT", "IP", "DETAIL",
        ],
        rows,
    );
}

/// An RFC 3339 UTC time from the API, to the second and without the `T` and zone, for tables
/// (whose headers say UTC); anything else is shown as it is.
fn time(rfc3339: &str) -> String {
    let text = clean(rfc3339);
    match (text.get(..19), text.as_bytes().get(10)) {
        (Some(prefix), Some(b'T')) if text.ends_with('Z') => prefix.replacen('T', " ", 1),
        _ => text,
    }
}

pub fn service_client(client: &ServiceClient) {
    println!("{}", clean(&client.name));
    println!("  client_id:     {}", clean(&client.client_id));
    if let Some(secret) = &client.client_secret {
        println!("  client_secret: {}", clean(secret));
    }
    println!("  scopes:        {}", clean(&client.scopes.join(" ")));
    println!("  created:       {}", clean(&client.created_at));
}

pub fn service_clients(clients: &[ServiceClient]) {
    if clients.is_empty() {
        println!("No service accounts.");
        return;
    }
    for client in clients {
        println!(
            "{}  {}  {}",
            clean(&client.client_id),
            cell(&client.name),
            clean(&client.scopes.join(" "))
        );
    }
}

pub fn book(book: &Book) {
    println!("{}", clean(&book.title));
    println!("  id:        {}", clean(&book.id));
    println!("  author:    {}", clean(&book.author));
    if let Some(year) = book.published_year {
        println!("  published: {year}");
    }
    if let Some(isbn) = &book.isbn {
        println!("  isbn:      {}", clean(isbn));
    }
    println!("  version:   {}", book.version);
    println!("  updated:   {}", clean(&book.updated_at));
}

/// Longest title or author shown in a table before it is cut with an ellipsis.
const MAX_WIDTH: usize = 40;

fn cell(text: &str) -> String {
    let text = clean(text);
    if text.chars().count() <= MAX_WIDTH {
        return text;
    }
    let mut cut: String = text.chars().take(MAX_WIDTH - 1).collect();
    cut.push('…');
    cut
}

pub fn books(books: &[Book]) {
    if books.is_empty() {
        println!("No books.");
        return;
    }
    let rows = books
        .iter()
        .map(|b| {
            vec![
                clean(&b.id),
                cell(&b.title),
                cell(&b.author),
                b.published_year.map(|y| y.to_string()).unwrap_or_default(),
                b.isbn.as_deref().map(clean).unwrap_or_default(),
                b.version.to_string(),
            ]
        })
        .collect();
    table(&["ID", "TITLE", "AUTHOR", "YEAR", "ISBN", "VERSION"], rows);
}

/// Prints `rows` (already cleaned) in columns under `header`.
fn table(header: &[&str], rows: Vec<Vec<String>>) {
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    for line in columns(&[vec![header], rows].concat()) {
        println!("{line}");
    }
}

/// Each row as one line, every column padded to its widest cell, two spaces apart.
fn columns(rows: &[Vec<String>]) -> Vec<String> {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (i, text) in row.iter().enumerate() {
            let width = text.chars().count();
            match widths.get_mut(i) {
                Some(w) => *w = (*w).max(width),
                None => widths.push(width),
            }
        }
    }
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(text, width)| format!("{text:<width$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("Dune\x1b[31m\n"), "Dune\u{fffd}[31m\u{fffd}");
    }

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let rows = [
            vec!["".to_owned(), "ID".to_owned(), "IP".to_owned()],
            vec!["*".to_owned(), "s-1".to_owned(), "127.0.0.1".to_owned()],
        ];
        assert_eq!(columns(&rows), ["   ID   IP", "*  s-1  127.0.0.1"]);
    }

    #[test]
    fn api_times_are_shortened_and_anything_else_is_kept() {
        assert_eq!(time("2026-11-28T14:26:33.123Z"), "2026-11-28 14:26:33");
        assert_eq!(time("yesterday"), "yesterday");
        assert_eq!(
            time("2026-11-28T14:26:33+02:00"),
            "2026-11-28T14:26:33+02:00"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(cell(&long).chars().count(), MAX_WIDTH);
        assert_eq!(cell("short"), "short");
    }
}
