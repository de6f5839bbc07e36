//! Book input, parsed into types that can only hold valid values.

use std::collections::BTreeMap;

use chrono::Datelike;
use serde::Deserialize;

/// 1-200 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        match trimmed.chars().count() {
            0 => Err("must not be empty"),
            1..=200 => Ok(Title(trimmed.to_owned())),
            _ => Err("must be at most 200 characters"),
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// 1-100 characters after trimming.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author(String);

impl Author {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        match trimmed.chars().count() {
            0 => Err("must not be empty"),
            1..=100 => Ok(Author(trimmed.to_owned())),
            _ => Err("must be at most 100 characters"),
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// An ISBN-10 or ISBN-13 with a valid check digit, stored without hyphens or spaces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Isbn(String);

impl Isbn {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let compact: String = raw
            .chars()
            .filter(|c| *c != '-' && *c != ' ')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let valid = match compact.len() {
            10 => isbn10_valid(&compact),
            13 => isbn13_valid(&compact),
            _ => return Err("must be an ISBN-10 or ISBN-13"),
        };
        if valid {
            Ok(Isbn(compact))
        } else {
            Err("has an invalid check digit or characters")
        }
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

fn isbn10_valid(s: &str) -> bool {
    let mut sum = 0;
    for (i, c) in s.chars().enumerate() {
        let value = match (i, c) {
            (9, 'X') => 10,
            (_, d) if d.is_ascii_digit() => d as u32 - '0' as u32,
            _ => return false,
        };
        sum += value * (10 - i as u32);
    }
    sum.is_multiple_of(11)
}

fn isbn13_valid(s: &str) -> bool {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = s
        .bytes()
        .enumerate()
        .map(|(i, b)| (b - b'0') as u32 * if i % 2 == 0 { 1 } else { 3 })
        .sum();
    sum.is_multiple_of(10)
}

/// A year of publication, not in the future.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedYear(i32);

impl PublishedYear {
    pub fn parse(year: i64) -> Result<Self, &'static str> {
        let current = chrono::Utc::now().year() as i64;
        if year > current {
            Err("must not be in the future")
        } else if year < -5000 {
            Err("is too far in the past")
        } else {
            Ok(PublishedYear(year as i32))
        }
    }

    pub fn value(self) -> i32 {
        self.0
    }
}

/// The request body of `POST /books` and `PUT /books/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BookRequest {
    pub title: String,
    pub author: String,
    #[serde(default)]
    pub isbn: Option<String>,
    #[serde(default)]
    pub published_year: Option<i64>,
}

/// A validated book, ready to store.
#[derive(Clone, Debug)]
pub struct BookInput {
    pub title: Title,
    pub author: Author,
    pub isbn: Option<Isbn>,
    pub published_year: Option<PublishedYear>,
}

impl BookRequest {
    /// Every field is checked, and every problem reported at once.
    pub fn parse(self) -> Result<BookInput, BTreeMap<String, String>> {
        let mut fields = BTreeMap::new();
        let mut note = |name: &str, problem: &str| {
            fields.insert(name.to_owned(), problem.to_owned());
        };
        let title = Title::parse(&self.title).map_err(|p| note("title", p)).ok();
        let author = Author::parse(&self.author)
            .map_err(|p| note("author", p))
            .ok();
        let isbn = match self.isbn.as_deref() {
            None => Some(None),
            Some(raw) => Isbn::parse(raw).map(Some).map_err(|p| note("isbn", p)).ok(),
        };
        let year = match self.published_year {
            None => Some(None),
            Some(y) => PublishedYear::parse(y)
                .map(Some)
                .map_err(|p| note("published_year", p))
                .ok(),
        };
        match (title, author, isbn, year) {
            (Some(title), Some(author), Some(isbn), Some(published_year)) => Ok(BookInput {
                title,
                author,
                isbn,
                published_year,
            }),
            _ => Err(fields),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isbn_check_digits() {
        assert_eq!(
            Isbn::parse("978-0-306-40615-7").unwrap().into_inner(),
            "9780306406157"
        );
        assert!(Isbn::parse("978-0-306-40615-8").is_err());
        assert_eq!(
            Isbn::parse("0-8044-2957-x").unwrap().into_inner(),
            "080442957X"
        );
        assert!(Isbn::parse("0-8044-2957-5").is_err());
        assert!(Isbn::parse("12345").is_err());
        assert!(Isbn::parse("97803064061X7").is_err());
    }

    #[test]
    fn titles_authors_and_years() {
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"t".repeat(201)).is_err());
        assert_eq!(Title::parse(" Dune ").unwrap().into_inner(), "Dune");
        assert!(Author::parse(&"a".repeat(101)).is_err());
        let next_year = chrono::Utc::now().year() as i64 + 1;
        assert!(PublishedYear::parse(next_year).is_err());
        assert!(PublishedYear::parse(1965).is_ok());
    }

    #[test]
    fn every_problem_is_reported() {
        let request = BookRequest {
            title: String::new(),
            author: "x".into(),
            isbn: Some("123".into()),
            published_year: Some(99999),
        };
        let fields = request.parse().unwrap_err();
        let names: Vec<&str> = fields.keys().map(String::as_str).collect();
        assert_eq!(names, ["isbn", "published_year", "title"]);
    }
}
