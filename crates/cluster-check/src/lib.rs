//! onyx cluster check
