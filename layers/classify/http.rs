//! Classification of `http::Response`s by status and headers.

/// Classifies `http::Response`s by status code and retry headers.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpClassifier {
    _private: (),
}
