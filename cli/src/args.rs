//! The command line, parsed by hand: global options anywhere, then a command and its options.

use std::collections::BTreeMap;

use shared::client::{AuditQuery, BookInput, BookQuery, UserQuery};
use shared::Role;

pub const USAGE: &str = "\
authbooks: the command-line client of the authbooks platform

Usage: authbooks [--url URL] [--json] COMMAND [ARGS]

Commands:
  login [USERNAME]      log in; the password is read without echo, or as one line from stdin.
                        With a second factor, then a one-time code (TOTP or a recovery code):
                        asked for on the terminal, or the next line of stdin
  register [USERNAME]   create an account (role user); does not log in
  logout [--all]        end this session on the server (--all: every session of the user)
  whoami                the logged-in user
  sessions              your live sessions (one per login); * marks this one
  sessions end ID       end one of them, everywhere
  mfa enable            turn on a second factor (TOTP, password login): shows the secret and
                        its otpauth:// URI for an authenticator app, asks for a code from it,
                        then shows 10 recovery codes, once. With --json: one JSON line with
                        the secret, the code read from stdin, then one with the codes
  mfa disable           remove the second factor (password login); asks for a code (TOTP or
                        a recovery code), on the terminal or as one line of stdin
  books list [--author NAME] [--search TEXT] [--limit N] [--cursor CURSOR] [--all]
                        one page of books (--all: every page)
  books get ID
  books add --title TITLE --author AUTHOR [--isbn ISBN] [--year YEAR]
  books edit ID [--title TITLE] [--author AUTHOR] [--isbn ISBN] [--year YEAR] [--if-match VERSION]
                        change the given fields ('' clears --isbn or --year); refused if the
                        book changed since it was read, or is not at VERSION
  books rm ID [--if-match VERSION]
                        delete (admin, and a password login: a refreshed session is not enough)
  admin roles USER ROLE...
                        set a user's roles: user, editor, admin (admin, password login)
  admin users find [NAME] [--limit N] [--cursor CURSOR]
                        a user by name (exact, any case; exit 4 if there is none), or every
                        user (--limit or --cursor: one page)
  admin users show USER
  admin users disable USER
                        the user's sessions end; login and refresh are refused until enabled
                        (admin, password login)
  admin users enable USER
  admin users sessions USER [--end]
                        a user's live sessions (--end: end them all, password login)
  admin audit [--user USER] [--type TYPE] [--limit N] [--cursor CURSOR]
                        the audit trail, newest first, one page (--limit: 1 to 100); TYPE is
                        login, login_failed, user_disabled, ... (see docs/api.md)
  admin clients create NAME SCOPE...
                        a service account for another service (client credentials); scopes:
                        books:read, books:write, introspect, revocations:read. Prints its
                        client_id and secret, shown only this once (admin, password login)
  admin clients list    the service accounts (admin)
  admin clients rotate CLIENT_ID
                        a new secret, shown once; the old one and its tokens end at once
  admin clients rm CLIENT_ID
                        delete a service account; every token it holds ends at once

USER is a username or a user id (an id-shaped argument is tried as an id first). Admin
commands need the role admin.

Options:
  --url URL   the platform's gateway; default $AUTHBOOKS_URL, else the URL of the stored
              login, else http://127.0.0.1:8080
  --json      machine-readable JSON on stdout; errors as {\"error\", \"message\"} on stderr
  -h, --help  this text

Tokens are stored in $AUTHBOOKS_CONFIG_DIR/tokens.json if set, else
$XDG_CONFIG_HOME/authbooks/tokens.json, else ~/.config/authbooks/tokens.json (mode 0600).
Expired access tokens are refreshed automatically.

Exit codes:
  0  success
  1  any other error (a server error, an unexpected answer, a local file problem)
  2  usage: bad arguments
  3  not logged in, session ended, wrong credentials or one-time code, or a fresh password
     login needed
  4  not found
  5  conflict: already exists (409), or changed since read (412)
  6  forbidden: your roles do not allow it, or an administrator disabled your account
  7  invalid input, refused by the server (400, 413, 422)
  8  the server is unreachable, unavailable, or rate limiting: try again later
";

/// What the user asked for.
#[derive(Debug, PartialEq)]
pub struct Cli {
    pub url: Option<String>,
    pub json: bool,
    pub command: Command,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Login {
        username: Option<String>,
    },
    Register {
        username: Option<String>,
    },
    Logout {
        all: bool,
    },
    Whoami,
    Sessions,
    SessionsEnd {
        id: String,
    },
    MfaEnable,
    MfaDisable,
    BooksList {
        query: BookQuery,
        all: bool,
    },
    BooksGet {
        id: String,
    },
    BooksAdd {
        book: BookInput,
    },
    BooksEdit {
        id: String,
        changes: BookChanges,
        if_match: Option<i64>,
    },
    BooksRm {
        id: String,
        if_match: Option<i64>,
    },
    AdminRoles {
        user: String,
        roles: Vec<Role>,
    },
    /// `name`: one user; else every user (`page`: one page only).
    UsersFind {
        name: Option<String>,
        query: UserQuery,
        page: bool,
    },
    UsersShow {
        user: String,
    },
    UsersDisable {
        user: String,
    },
    UsersEnable {
        user: String,
    },
    UsersSessions {
        user: String,
        end: bool,
    },
    /// `user`: a username or id, resolved to an id before the query.
    Audit {
        user: Option<String>,
        query: AuditQuery,
    },
    ClientsCreate {
        name: String,
        scopes: Vec<String>,
    },
    ClientsList,
    ClientsRotate {
        id: String,
    },
    ClientsRm {
        id: String,
    },
}

/// The fields `books edit` changes; `Some(None)` clears an optional field.
#[derive(Debug, Default, PartialEq)]
pub struct BookChanges {
    pub title: Option<String>,
    pub author: Option<String>,
    pub isbn: Option<Option<String>>,
    pub published_year: Option<Option<i32>>,
}

impl BookChanges {
    pub fn is_empty(&self) -> bool {
        *self == BookChanges::default()
    }

    pub fn apply(self, book: &mut BookInput) {
        if let Some(title) = self.title {
            book.title = title;
        }
        if let Some(author) = self.author {
            book.author = author;
        }
        if let Some(isbn) = self.isbn {
            book.isbn = isbn;
        }
        if let Some(year) = self.published_year {
            book.published_year = year;
        }
    }
}

/// A usage error: the message, shown with a pointer to `--help`.
#[derive(Debug, PartialEq)]
pub struct UsageError(pub String);

/// Options that take a value; every other `--name` is a flag.
const VALUE_OPTIONS: [&str; 11] = [
    "url", "title", "author", "isbn", "year", "if-match", "limit", "cursor", "search", "user",
    "type",
];

/// The words and options after the program name, split up.
#[derive(Default)]
struct Words {
    positional: Vec<String>,
    options: BTreeMap<String, String>,
    flags: Vec<String>,
}

fn split(args: Vec<String>) -> Result<Words, UsageError> {
    let mut words = Words::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            words.positional.extend(args.by_ref());
            break;
        }
        if arg == "-h" {
            words.flags.push("help".into());
            continue;
        }
        let Some(option) = arg.strip_prefix("--") else {
            words.positional.push(arg);
            continue;
        };
        let (name, inline) = match option.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (option.to_owned(), None),
        };
        if VALUE_OPTIONS.contains(&name.as_str()) {
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .ok_or_else(|| UsageError(format!("--{name} needs a value")))?,
            };
            if words.options.insert(name.clone(), value).is_some() {
                return Err(UsageError(format!("--{name} given twice")));
            }
        } else if inline.is_some() {
            return Err(UsageError(format!("--{name} takes no value")));
        } else {
            words.flags.push(name);
        }
    }
    Ok(words)
}

impl Words {
    /// Refuses any option the command does not know.
    fn allow(&self, command: &str, options: &[&str], flags: &[&str]) -> Result<(), UsageError> {
        if let Some(name) = self.options.keys().find(|n| !options.contains(&n.as_str())) {
            return Err(UsageError(format!("{command}: unknown option --{name}")));
        }
        if let Some(name) = self.flags.iter().find(|n| !flags.contains(&n.as_str())) {
            return Err(UsageError(format!("{command}: unknown option --{name}")));
        }
        Ok(())
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.options.remove(name)
    }

    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<String>) -> Result<Cli, UsageError> {
    let mut words = split(args)?;
    let url = words.take("url");
    let json = words.flag("json");
    words.flags.retain(|f| f != "json");
    if words.flag("help") || words.positional.is_empty() {
        return Ok(Cli {
            url,
            json,
            command: Command::Help,
        });
    }
    let positional = std::mem::take(&mut words.positional);
    let words_ref: Vec<&str> = positional.iter().map(String::as_str).collect();
    let command = match words_ref.as_slice() {
        ["login", rest @ ..] => Command::Login {
            username: one_optional("login", rest, &words)?,
        },
        ["register", rest @ ..] => Command::Register {
            username: one_optional("register", rest, &words)?,
        },
        ["logout"] => {
            words.allow("logout", &[], &["all"])?;
            Command::Logout {
                all: words.flag("all"),
            }
        }
        ["whoami"] => {
            words.allow("whoami", &[], &[])?;
            Command::Whoami
        }
        ["sessions"] => {
            words.allow("sessions", &[], &[])?;
            Command::Sessions
        }
        ["sessions", "end", id] => {
            words.allow("sessions end", &[], &[])?;
            Command::SessionsEnd {
                id: (*id).to_owned(),
            }
        }
        ["mfa", "enable"] => {
            words.allow("mfa enable", &[], &[])?;
            Command::MfaEnable
        }
        ["mfa", "disable"] => {
            words.allow("mfa disable", &[], &[])?;
            Command::MfaDisable
        }
        ["books", "list"] => books_list(words)?,
        ["books", "get", id] => {
            words.allow("books get", &[], &[])?;
            Command::BooksGet {
                id: (*id).to_owned(),
            }
        }
        ["books", "add"] => books_add(words)?,
        ["books", "edit", id] => books_edit(id, words)?,
        ["books", "rm", id] => {
            words.allow("books rm", &["if-match"], &[])?;
            Command::BooksRm {
                id: (*id).to_owned(),
                if_match: version(words.take("if-match"))?,
            }
        }
        ["admin", "roles", user, roles @ ..] if !roles.is_empty() => {
            words.allow("admin roles", &[], &[])?;
            Command::AdminRoles {
                user: (*user).to_owned(),
                roles: roles
                    .iter()
                    .map(|r| {
                        Role::parse(r).ok_or_else(|| {
                            UsageError(format!(
                                "unknown role {r:?}: expected user, editor or admin"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            }
        }
        ["admin", "clients", "create", name, scopes @ ..] if !scopes.is_empty() => {
            words.allow("admin clients create", &[], &[])?;
            for scope in scopes {
                if shared::Scope::parse(scope).is_none() {
                    return Err(UsageError(format!(
                        "unknown scope {scope:?}: expected books:read, books:write, introspect \
                         or revocations:read"
                    )));
                }
            }
            Command::ClientsCreate {
                name: (*name).to_owned(),
                scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            }
        }
        ["admin", "clients", "list"] => {
            words.allow("admin clients list", &[], &[])?;
            Command::ClientsList
        }
        ["admin", "clients", "rotate", id] => {
            words.allow("admin clients rotate", &[], &[])?;
            Command::ClientsRotate {
                id: (*id).to_owned(),
            }
        }
        ["admin", "clients", "rm", id] => {
            words.allow("admin clients rm", &[], &[])?;
            Command::ClientsRm {
                id: (*id).to_owned(),
            }
        }
        ["admin", "users", "find", rest @ ..] => users_find(rest, words)?,
        ["admin", "users", "show", user] => {
            words.allow("admin users show", &[], &[])?;
            Command::UsersShow {
                user: (*user).to_owned(),
            }
        }
        ["admin", "users", "disable", user] => {
            words.allow("admin users disable", &[], &[])?;
            Command::UsersDisable {
                user: (*user).to_owned(),
            }
        }
        ["admin", "users", "enable", user] => {
            words.allow("admin users enable", &[], &[])?;
            Command::UsersEnable {
                user: (*user).to_owned(),
            }
        }
        ["admin", "users", "sessions", user] => {
            words.allow("admin users sessions", &[], &["end"])?;
            Command::UsersSessions {
                user: (*user).to_owned(),
                end: words.flag("end"),
            }
        }
        ["admin", "audit"] => audit(words)?,
        ["sessions", ..] => {
            return Err(UsageError(
                "expected `sessions` or `sessions end ID`".into(),
            ))
        }
        ["mfa", ..] => return Err(UsageError("expected `mfa enable` or `mfa disable`".into())),
        ["admin", "users", ..] => {
            return Err(UsageError(
                "expected `admin users find [NAME]`, `admin users show|disable|enable USER` or \
                 `admin users sessions USER [--end]`"
                    .into(),
            ))
        }
        ["books", ..] => return Err(UsageError(
            "expected `books list`, `books get ID`, `books add`, `books edit ID` or `books rm ID`"
                .into(),
        )),
        ["admin", ..] => {
            return Err(UsageError(
                "expected `admin roles USER ROLE...`, `admin users ...`, `admin audit` or \
                 `admin clients create NAME SCOPE...|list|rotate ID|rm ID`"
                    .into(),
            ))
        }
        [other, ..] => return Err(UsageError(format!("unknown command {other:?}"))),
        [] => Command::Help,
    };
    Ok(Cli { url, json, command })
}

fn one_optional(command: &str, rest: &[&str], words: &Words) -> Result<Option<String>, UsageError> {
    words.allow(command, &[], &[])?;
    match rest {
        [] => Ok(None),
        [name] => Ok(Some((*name).to_owned())),
        _ => Err(UsageError(format!("{command} takes one USERNAME"))),
    }
}

/// `--limit`: a page size the servers accept, 1 to 100.
fn limit(raw: Option<String>) -> Result<Option<u32>, UsageError> {
    raw.map(|raw| {
        raw.parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| UsageError(format!("--limit: expected 1 to 100, got {raw:?}")))
    })
    .transpose()
}

fn users_find(rest: &[&str], mut words: Words) -> Result<Command, UsageError> {
    words.allow("admin users find", &["limit", "cursor"], &[])?;
    let limit = limit(words.take("limit"))?;
    let cursor = words.take("cursor");
    match rest {
        [] => Ok(Command::UsersFind {
            name: None,
            page: limit.is_some() || cursor.is_some(),
            query: UserQuery {
                username: None,
                cursor,
                limit,
            },
        }),
        [name] if limit.is_none() && cursor.is_none() => Ok(Command::UsersFind {
            name: Some((*name).to_owned()),
            page: true,
            query: UserQuery {
                username: Some((*name).to_owned()),
                ..UserQuery::default()
            },
        }),
        [_] => Err(UsageError(
            "admin users find NAME finds one user: --limit and --cursor page through all of them"
                .into(),
        )),
        _ => Err(UsageError("admin users find takes one NAME".into())),
    }
}

fn audit(mut words: Words) -> Result<Command, UsageError> {
    words.allow("admin audit", &["user", "type", "limit", "cursor"], &[])?;
    Ok(Command::Audit {
        user: words.take("user").filter(|u| !u.is_empty()),
        query: AuditQuery {
            user: None,
            kind: words.take("type").filter(|t| !t.is_empty()),
            cursor: words.take("cursor"),
            limit: limit(words.take("limit"))?,
        },
    })
}

fn books_list(mut words: Words) -> Result<Command, UsageError> {
    words.allow(
        "books list",
        &["author", "search", "limit", "cursor"],
        &["all"],
    )?;
    let limit = limit(words.take("limit"))?;
    Ok(Command::BooksList {
        all: words.flag("all"),
        query: BookQuery {
            limit,
            cursor: words.take("cursor"),
            author: words.take("author"),
            q: words.take("search"),
        },
    })
}

fn books_add(mut words: Words) -> Result<Command, UsageError> {
    words.allow("books add", &["title", "author", "isbn", "year"], &[])?;
    let (Some(title), Some(author)) = (words.take("title"), words.take("author")) else {
        return Err(UsageError("books add needs --title and --author".into()));
    };
    Ok(Command::BooksAdd {
        book: BookInput {
            title,
            author,
            isbn: words.take("isbn").filter(|i| !i.is_empty()),
            published_year: year(words.take("year"))?.flatten(),
        },
    })
}

fn books_edit(id: &str, mut words: Words) -> Result<Command, UsageError> {
    words.allow(
        "books edit",
        &["title", "author", "isbn", "year", "if-match"],
        &[],
    )?;
    let changes = BookChanges {
        title: words.take("title"),
        author: words.take("author"),
        isbn: words
            .take("isbn")
            .map(|isbn| Some(isbn).filter(|i| !i.is_empty())),
        published_year: year(words.take("year"))?,
    };
    if changes.is_empty() {
        return Err(UsageError(
            "books edit: nothing to change (give --title, --author, --isbn or --year)".into(),
        ));
    }
    Ok(Command::BooksEdit {
        id: id.to_owned(),
        changes,
        if_match: version(words.take("if-match"))?,
    })
}

/// `--year`: a number, or '' to clear it.
fn year(raw: Option<String>) -> Result<Option<Option<i32>>, UsageError> {
    match raw.as_deref() {
        None => Ok(None),
        Some("") => Ok(Some(None)),
        Some(raw) => raw
            .parse()
            .map(|y| Some(Some(y)))
            .map_err(|_| UsageError(format!("--year: expected a year, got {raw:?}"))),
    }
}

/// `--if-match`: a book's version (its ETag, with or without the quotes).
fn version(raw: Option<String>) -> Result<Option<i64>, UsageError> {
    raw.map(|raw| {
        raw.trim_matches('"').parse().map_err(|_| {
            UsageError(format!(
                "--if-match: expected a version number, got {raw:?}"
            ))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(line: &str) -> Result<Cli, UsageError> {
        parse(line.split_whitespace().map(str::to_owned).collect())
    }

    #[test]
    fn global_options_may_come_anywhere() {
        let parsed = cli("books list --json --url http://h:1 --limit 5").expect("valid");
        assert!(parsed.json);
        assert_eq!(parsed.url.as_deref(), Some("http://h:1"));
        assert_eq!(
            parsed.command,
            Command::BooksList {
                query: BookQuery {
                    limit: Some(5),
                    ..BookQuery::default()
                },
                all: false
            }
        );
    }

    #[test]
    fn edit_takes_changes_and_empty_values_clear() {
        let parsed = parse(
            [
                "books",
                "edit",
                "id1",
                "--isbn=",
                "--year",
                "1965",
                "--if-match",
                "\"3\"",
            ]
            .map(str::to_owned)
            .to_vec(),
        )
        .expect("valid");
        assert_eq!(
            parsed.command,
            Command::BooksEdit {
                id: "id1".into(),
                changes: BookChanges {
                    isbn: Some(None),
                    published_year: Some(Some(1965)),
                    ..BookChanges::default()
                },
                if_match: Some(3),
            }
        );
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for line in [
            "books add --title Dune",
            "books edit id1",
            "books list --limit 0",
            "books list --colour red",
            "admin roles u1 wizard",
            "admin roles u1",
            "frobnicate",
            "login a b",
            "books add --title",
            "whoami --all",
            "sessions end",
            "sessions end a b",
            "sessions --end",
            "mfa",
            "mfa on",
            "mfa enable --code 123456",
            "admin users",
            "admin users show",
            "admin users show a b",
            "admin users disable",
            "admin users find a b",
            "admin users find alice --limit 5",
            "admin users find --limit 101",
            "admin users sessions alice --all",
            "admin users enable alice --end",
            "admin audit --limit 0",
            "admin audit --user",
            "admin audit alice",
            "admin roles alice",
        ] {
            assert!(cli(line).is_err(), "{line}");
        }
    }

    #[test]
    fn sessions_and_mfa_commands() {
        assert_eq!(cli("sessions").expect("valid").command, Command::Sessions);
        assert_eq!(
            cli("sessions end s1 --json").expect("valid").command,
            Command::SessionsEnd { id: "s1".into() }
        );
        assert_eq!(
            cli("mfa enable").expect("valid").command,
            Command::MfaEnable
        );
        assert_eq!(
            cli("mfa disable").expect("valid").command,
            Command::MfaDisable
        );
    }

    #[test]
    fn admin_users_take_a_name_or_an_id() {
        assert_eq!(
            cli("admin roles alice user editor").expect("valid").command,
            Command::AdminRoles {
                user: "alice".into(),
                roles: vec![Role::User, Role::Editor],
            }
        );
        assert_eq!(
            cli("admin users find Alice").expect("valid").command,
            Command::UsersFind {
                name: Some("Alice".into()),
                page: true,
                query: UserQuery {
                    username: Some("Alice".into()),
                    ..UserQuery::default()
                },
            }
        );
        assert_eq!(
            cli("admin users find").expect("valid").command,
            Command::UsersFind {
                name: None,
                page: false,
                query: UserQuery::default(),
            }
        );
        assert_eq!(
            cli("admin users find --limit 2 --cursor c1")
                .expect("valid")
                .command,
            Command::UsersFind {
                name: None,
                page: true,
                query: UserQuery {
                    username: None,
                    cursor: Some("c1".into()),
                    limit: Some(2),
                },
            }
        );
        let id = "0190a3f2-7b1c-7d2e-8f00-1234567890ab";
        assert_eq!(
            cli(&format!("admin users show {id}"))
                .expect("valid")
                .command,
            Command::UsersShow { user: id.into() }
        );
        assert_eq!(
            cli("admin users disable bob").expect("valid").command,
            Command::UsersDisable { user: "bob".into() }
        );
        assert_eq!(
            cli("admin users enable bob").expect("valid").command,
            Command::UsersEnable { user: "bob".into() }
        );
        assert_eq!(
            cli("admin users sessions bob").expect("valid").command,
            Command::UsersSessions {
                user: "bob".into(),
                end: false
            }
        );
        assert_eq!(
            cli("admin users sessions bob --end")
                .expect("valid")
                .command,
            Command::UsersSessions {
                user: "bob".into(),
                end: true
            }
        );
    }

    #[test]
    fn audit_filters() {
        assert_eq!(
            cli("admin audit").expect("valid").command,
            Command::Audit {
                user: None,
                query: AuditQuery::default(),
            }
        );
        assert_eq!(
            cli("admin audit --user bob --type=login_failed --limit 50 --cursor c1")
                .expect("valid")
                .command,
            Command::Audit {
                user: Some("bob".into()),
                query: AuditQuery {
                    user: None,
                    kind: Some("login_failed".into()),
                    cursor: Some("c1".into()),
                    limit: Some(50),
                },
            }
        );
    }

    #[test]
    fn no_command_or_help_prints_usage() {
        assert_eq!(cli("").expect("valid").command, Command::Help);
        assert_eq!(cli("books add -h").expect("valid").command, Command::Help);
    }
}
