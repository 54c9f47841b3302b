//! Where a store lives: a SQLite file or a PostgreSQL URL, from `--store`.

/// Which database a store lives in, from `--store`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created if missing).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL URL (`postgres://user:password@host:port/database?...`).
    Postgres(String),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is PostgreSQL; `sqlite:PATH` or a plain path is a
    /// SQLite file.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            let path = text
                .strip_prefix("sqlite://")
                .or_else(|| text.strip_prefix("sqlite:"));
            Location::Sqlite(path.unwrap_or(text).into())
        }
    }

    /// Where it is, for logs and messages: a PostgreSQL URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Location::Sqlite(p) => p.display().to_string(),
            Location::Postgres(url) => redact_password(url),
        }
    }

    pub(crate) fn url(&self) -> String {
        match self {
            Location::Postgres(url) => url.clone(),
            // sqlx reads the path percent-decoded: encode what would end it or be decoded.
            Location::Sqlite(p) => {
                let mut path = String::new();
                for c in p.display().to_string().chars() {
                    match c {
                        '%' => path.push_str("%25"),
                        '?' => path.push_str("%3F"),
                        '#' => path.push_str("%23"),
                        c => path.push(c),
                    }
                }
                format!("sqlite://{path}")
            }
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let Some((user, _password)) = userinfo.split_once(':') else {
        return url.to_string();
    };
    let slash = if rest.contains('/') { "/" } else { "" };
    format!("{scheme}://{user}:***@{host}{slash}{tail}")
}
