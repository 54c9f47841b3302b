//! What can go wrong in the store.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    NotFound(String),
    #[error("invalid continue token")]
    BadContinue,
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("the store's writer has stopped")]
    WriterGone,
    /// Another server took the lease this store's writes were fenced by.
    #[error(
        "fenced: lease {lease:?} has moved on from token {token}; this server no longer writes"
    )]
    Fenced { lease: String, token: i64 },
}
