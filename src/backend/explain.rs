//! How a failed call to a kube-apiserver is told to a person: one sentence for a status message, a template's record
//! or the console, never a program's debug dump (kube's own `Display` of an API error appends the whole Status as Rust
//! debug output). Logs keep the whole error; this is for what people read.

/// What went wrong with a call, in words: kube-apiserver's own message for a refusal, else why there was no answer.
#[must_use]
pub fn sentence(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => status.message.clone(),
        kube::Error::Api(status) if !status.reason.is_empty() => {
            format!("refused: {} ({})", status.reason, status.code)
        }
        kube::Error::Api(status) => format!("refused with HTTP {}", status.code),
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!("no answer: {}", root_cause(error)),
        kube::Error::SerdeError(cause) => format!("an answer that could not be read: {cause}"),
        other => root_cause(other),
    }
}

/// Whether `error` is kube-apiserver saying the object is not there.
#[must_use]
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// The innermost cause's own words (`Connection refused (os error 111)`, `deadline has elapsed`), which say more than
/// the wrappers around it.
#[must_use]
pub fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Rust debug output in a text meant for people: `Some(`, `Status {`, a struct's `field: ` list, kube's error prefixes.
/// For tests of every message the server writes.
#[must_use]
pub fn debug_formatting(text: &str) -> Option<&'static str> {
    const MARKERS: &[&str] = &[
        "Some(",
        "None,",
        "ApiError",
        "ServiceError",
        "HyperError",
        "ErrorResponse",
        "Status {",
        "StatusSummary",
        " { ",
        ": None",
        "\\\"",
    ];
    MARKERS.iter().copied().find(|marker| text.contains(marker))
}

#[cfg(test)]
mod tests {
    use kube::core::Status;

    use super::*;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(Status::failure(message, reason).with_code(code).boxed())
    }

    #[test]
    fn a_refusal_is_kube_apiservers_own_message() {
        let missing = api(404, "NotFound", "secrets \"x\" not found");
        assert!(
            debug_formatting(&missing.to_string()).is_some(),
            "kube's Display: {missing}"
        );
        assert_eq!(sentence(&missing), "secrets \"x\" not found");
        assert!(is_not_found(&missing));
        assert_eq!(
            sentence(&api(429, "TooManyRequests", "")),
            "refused: TooManyRequests (429)"
        );
        assert_eq!(sentence(&api(500, "", "")), "refused with HTTP 500");
    }

    #[test]
    fn no_answer_is_told_by_its_innermost_cause() {
        let refused = std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        );
        let error = kube::Error::Service(Box::new(refused));
        assert_eq!(sentence(&error), "no answer: Connection refused (os error 111)");
        assert!(!is_not_found(&error));
    }

    #[test]
    fn every_sentence_reads_without_debug_output() {
        for error in [
            api(404, "NotFound", "secrets \"x\" not found"),
            api(403, "Forbidden", ""),
            kube::Error::Service("deadline has elapsed".into()),
        ] {
            let text = sentence(&error);
            assert_eq!(debug_formatting(&text), None, "{text}");
        }
        assert_eq!(debug_formatting("code: 404, status: Some(Failure)"), Some("Some("));
    }
}
