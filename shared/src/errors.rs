//! Errors keep their causes as a `source()` chain, and a wrapper's own message does not repeat
//! its cause's. Where a whole story is shown (a user's status, a log line) it is the chain.

use std::error::Error;

/// The error's message and every cause under it, joined with `: `.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        // `#[error(transparent)]` layers repeat their cause's message word for word.
        if !text.ends_with(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the user")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("the table is gone")]
    struct Inner;

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct Transparent(#[from] Outer);

    #[test]
    fn causes_are_joined_once() {
        assert_eq!(chain(&Outer(Inner)), "reading the user: the table is gone");
        assert_eq!(
            chain(&Transparent(Outer(Inner))),
            "reading the user: the table is gone"
        );
    }
}
