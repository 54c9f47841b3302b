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

impl EvalError {
    /// Whether the expression hit one of the crate's bounds (`MAX_VALUE_BYTES`,
    /// `MAX_EXPR_DEPTH`, `MAX_RANGE_ITEMS`, `MAX_EVAL_STEPS`): every such message names its
    /// constant in parentheses.
    pub fn is_limit(&self) -> bool {
        match self {
            EvalError::Syntax { message, .. } | EvalError::Runtime { message, .. } => {
                message.contains("(MAX_")
            }
            EvalError::Unresolved(_) => false,
        }
    }
}
