//! What the commands print: JSON for scripts (`--json`), tables and short lines for people.

use serde::Serialize;
use shared::client::{Book, ServiceClient, User};

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
    let header = ["ID", "TITLE", "AUTHOR", "YEAR", "ISBN", "VERSION"].map(str::to_owned);
    let rows: Vec<[String; 6]> = books
        .iter()
        .map(|b| {
            [
                clean(&b.id),
                cell(&b.title),
                cell(&b.author),
                b.published_year.map(|y| y.to_string()).unwrap_or_default(),
                b.isbn.as_deref().map(clean).unwrap_or_default(),
                b.version.to_string(),
            ]
        })
        .collect();
    let mut widths = [0; 6];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal() {
        assert_eq!(clean("Dune\x1b[31m\n"), "Dune\u{fffd}[31m\u{fffd}");
    }

    #[test]
    fn long_cells_are_cut() {
        let long = "x".repeat(100);
        assert_eq!(cell(&long).chars().count(), MAX_WIDTH);
        assert_eq!(cell("short"), "short");
    }
}
