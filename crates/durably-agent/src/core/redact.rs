//! Redaction: no credential reaches the store. Every text an agent records or returns from a
//! provider's error goes through [`Secrets::redact`], which blanks the secrets the agent was
//! configured with (whatever their format), the keys held by the common providers' environment
//! variables, and anything shaped like a bearer token or an `sk-…` key.

use std::fmt;
use std::sync::Arc;

use crate::ModelError;

/// The environment variables the common providers' clients read their key from. A key read
/// from one of them is never seen by the agent, so their values are blanked too.
pub(crate) const PROVIDER_KEY_VARS: &[&str] = &[
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GROQ_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "MISTRAL_API_KEY",
    "COHERE_API_KEY",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "TOGETHER_API_KEY",
    "PERPLEXITY_API_KEY",
    "OPENROUTER_API_KEY",
    "FIREWORKS_API_KEY",
    "HUGGINGFACE_API_KEY",
    "HF_TOKEN",
    "VOYAGE_API_KEY",
    "MOONSHOT_API_KEY",
    "HYPERBOLIC_API_KEY",
    "GALADRIEL_API_KEY",
    "MIRA_API_KEY",
    "OLLAMA_API_KEY",
];

const BLANK: &str = "[redacted]";

/// The secrets one agent blanks out. Cheap to clone; its `Debug` shows how many, never what.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Arc<Vec<String>>);

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} configured)", self.0.len())
    }
}

impl Secrets {
    /// These secrets, and those already held.
    pub(crate) fn with(&self, more: impl IntoIterator<Item = String>) -> Secrets {
        let mut all = (*self.0).clone();
        all.extend(more.into_iter().filter(|s| !s.is_empty()));
        all.sort();
        all.dedup();
        Secrets(Arc::new(all))
    }

    /// `error` with its message redacted.
    pub(crate) fn redact_model_error(&self, mut error: ModelError) -> ModelError {
        error.message = self.redact(&error.message);
        error
    }

    /// `text` with every secret blanked out: the configured ones, the provider keys in the
    /// environment (read now, so a key set after the agent was built counts), bearer tokens
    /// and `sk-…` keys.
    pub(crate) fn redact(&self, text: &str) -> String {
        let env = env_secrets(|name| std::env::var(name).ok());
        redact(text, self.0.iter().chain(env.iter()).map(String::as_str))
    }
}

/// An error of a client library, kept as its redacted text: what a run records as its error
/// when the agent has no durably error to return in its place.
#[derive(Debug)]
pub(crate) struct RedactedError(String);

impl RedactedError {
    pub(crate) fn new(error: &dyn std::error::Error, secrets: &Secrets) -> Self {
        RedactedError(secrets.redact(&error.to_string()))
    }
}

impl fmt::Display for RedactedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RedactedError {}

/// The non-empty values of [`PROVIDER_KEY_VARS`], as `get` reads them.
fn env_secrets(get: impl Fn(&str) -> Option<String>) -> Vec<String> {
    PROVIDER_KEY_VARS.iter().filter_map(|name| get(name)).filter(|v| !v.trim().is_empty()).collect()
}

/// Blanks out `secrets`, then bearer tokens and `sk-…` keys, in `text`.
pub(crate) fn redact<'a>(text: &str, secrets: impl IntoIterator<Item = &'a str>) -> String {
    let mut secrets: Vec<&str> = secrets.into_iter().map(str::trim).filter(|s| !s.is_empty()).collect();
    // Longest first, so that a secret containing another is blanked whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut text = text.to_owned();
    for secret in secrets {
        if text.contains(secret) {
            text = text.replace(secret, BLANK);
        }
    }
    redact_patterns(&text)
}

/// Blanks out what looks like a credential whoever configured it: the token after `Bearer `,
/// and words starting with `sk-`.
fn redact_patterns(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let bearer = find_ci(rest, "bearer ");
        let key = find_key(rest);
        let (at, skip) = match (bearer, key) {
            (Some(b), Some(k)) if b <= k => (b, "bearer ".len()),
            (Some(b), None) => (b, "bearer ".len()),
            (_, Some(k)) => (k, 0),
            (None, None) => break,
        };
        out.push_str(&rest[..at + skip]);
        let secret = &rest[at + skip..];
        let end = secret
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | ';' | ')'))
            .unwrap_or(secret.len());
        // "Bearer " followed by nothing keeps nothing; a token already blanked stays as it is.
        if end > 0 {
            out.push_str(if secret.starts_with(BLANK) { &secret[..end] } else { BLANK });
        }
        rest = &secret[end..];
    }
    out.push_str(rest);
    out
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(needle)
}

/// The first `sk-` that starts a word (not the one in "risk-free").
fn find_key(text: &str) -> Option<usize> {
    text.match_indices("sk-")
        .map(|(i, _)| i)
        .find(|&i| text[..i].chars().next_back().is_none_or(|c| !c.is_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(text: &str) -> String {
        redact(text, [])
    }

    #[test]
    fn keys_and_bearer_tokens_are_blanked() {
        assert_eq!(
            plain("Incorrect API key provided: sk-test-SECRET123. See docs."),
            "Incorrect API key provided: [redacted] See docs."
        );
        assert_eq!(
            plain("header Authorization: Bearer abc.def, next"),
            "header Authorization: Bearer [redacted], next"
        );
        assert_eq!(plain("header Bearer xyz.1 rejected"), "header Bearer [redacted] rejected");
        assert_eq!(plain("bad key sk-abc123, try again"), "bad key [redacted], try again");
        assert_eq!(redact("key mysecret here", ["mysecret"]), "key [redacted] here");
        assert_eq!(redact("Bearer mysecret", ["mysecret"]), "Bearer [redacted]");
        assert_eq!(plain("nothing to hide"), "nothing to hide");
        assert_eq!(plain("a risk-free call"), "a risk-free call");
    }

    #[test]
    fn configured_secrets_of_any_format_are_blanked_whole() {
        for key in [
            "gsk_8fJ2kQ9zLmN4pR7sT1vW3xY5aB6cD0eF",
            "3f9a1c7e5b2d8f4a6c0e9b1d7f3a5c8e2b4d6f0a",
            "AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY",
        ] {
            let text = format!("Invalid API Key: {key}. (key={key})");
            assert_eq!(redact(&text, [key]), "Invalid API Key: [redacted]. (key=[redacted])");
        }
        // A secret that contains another is blanked whole, not left with a tail.
        assert_eq!(redact("k=abc123xyz", ["abc", "abc123xyz"]), "k=[redacted]");
        let secrets = Secrets::default().with(["gsk_secret".to_owned(), String::new()]);
        assert_eq!(secrets.redact("gsk_secret!"), "[redacted]!");
        assert_eq!(format!("{secrets:?}"), "Secrets(1 configured)");
    }

    #[test]
    fn the_provider_key_variables_are_read() {
        let env = env_secrets(|name| match name {
            "GROQ_API_KEY" => Some("gsk_from_env".into()),
            "ANTHROPIC_API_KEY" => Some("sk-ant-from-env".into()),
            "MISTRAL_API_KEY" => Some("  ".into()),
            _ => None,
        });
        assert_eq!(env, ["sk-ant-from-env", "gsk_from_env"]);
    }
}
