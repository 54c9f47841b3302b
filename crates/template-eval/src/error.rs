//! The crate's one error type, shared by the substituter and both expression languages.

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("failed to resolve {{{{{0}}}}}")]
    Unresolved(String),
    #[error("invalid expression '{expr}': {message}")]
    Syntax { expr: String, message: String },
    #[error("failed to evaluate '{expr}': {message}")]
    Runtime { expr: String, message: String },
}
