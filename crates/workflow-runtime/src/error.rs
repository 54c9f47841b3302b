//! The runtime's errors. The API maps them to Argo's gRPC codes; nothing here knows of HTTP.

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The workflow, or what was asked of it, is not valid (a bad manifest, parameter or
    /// selector): the caller's to fix.
    #[error("{0}")]
    Invalid(String),
    /// The workflow is not in a state that allows it (it has completed; retry of one that
    /// did not fail).
    #[error("{0}")]
    Precondition(String),
    /// What the store holds of a workflow cannot be read back (a manifest, context or event
    /// that no longer decodes).
    #[error("stored workflow: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}
