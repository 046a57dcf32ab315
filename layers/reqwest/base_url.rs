//! [`BaseUrl`]: a fallback target that is another host for the same API (another region of an
//! endpoint, a second provider of an OpenAI-compatible API), and [`rebase`], the stack's
//! rewrite that points each attempt's request at its target.

use http::uri::{Authority, PathAndQuery, Scheme};

use crate::error::ConfigError;

/// The scheme, host and path prefix of an API, as a stack's target key:
/// `BaseUrl::parse("https://api.openai.com/v1")`.
///
/// With [`rebase`] as the stack's rewrite, an attempt to this target goes to its scheme and
/// host; a request written with a path only (`/chat/completions`) gets this prefix too
/// (`https://api.openai.com/v1/chat/completions`), so targets whose paths differ (a proxy under
/// `/openai`) work alike. An absolute request keeps its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    /// The path prefix, without a trailing `/` (empty for none).
    prefix: String,
}

impl BaseUrl {
    /// Parses `https://host[:port][/prefix]`; anything else (no scheme or host, a query) is a
    /// [`ConfigError`] naming `base_url`, whose message does not repeat the value.
    pub fn parse(url: &str) -> Result<BaseUrl, ConfigError> {
        let invalid = |why: &'static str| ConfigError::new("base_url", "(not shown)", why);
        let uri: http::Uri = url
            .parse()
            .map_err(|_| invalid("must be an absolute URL: scheme://host[/prefix]"))?;
        let parts = uri.into_parts();
        let (Some(scheme), Some(authority)) = (parts.scheme, parts.authority) else {
            return Err(invalid("must be an absolute URL: scheme://host[/prefix]"));
        };
        let path = parts
            .path_and_query
            .as_ref()
            .map_or("", PathAndQuery::as_str);
        if path.contains('?') {
            return Err(invalid("must not have a query"));
        }
        Ok(BaseUrl {
            scheme,
            authority,
            prefix: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The host (and port).
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

/// Points `request` at `base`: its scheme and host, and for a request written with a path
/// only, its path prefix. A stack's rewrite for [`BaseUrl`] targets
/// (`StackBuilder::rewrite(service, rebase)`).
///
/// ```
/// use tower_headroom::reqwest::{BaseUrl, rebase};
///
/// let backup = BaseUrl::parse("https://backup.example/openai/v1/").unwrap();
/// let mut request = http::Request::post("/chat/completions").body(()).unwrap();
/// rebase(&mut request, &backup);
/// assert_eq!(request.uri(), "https://backup.example/openai/v1/chat/completions");
///
/// let mut absolute = http::Request::post("https://api.openai.com/v1/chat/completions?x=1")
///     .body(())
///     .unwrap();
/// rebase(&mut absolute, &backup);
/// assert_eq!(absolute.uri(), "https://backup.example/v1/chat/completions?x=1");
/// ```
pub fn rebase<B>(request: &mut http::Request<B>, base: &BaseUrl) {
    let uri = request.uri();
    let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    let path = if uri.scheme().is_none() && !base.prefix.is_empty() {
        format!("{}{}", base.prefix, path)
    } else {
        path.to_owned()
    };
    let rebased = http::Uri::builder()
        .scheme(base.scheme.clone())
        .authority(base.authority.clone())
        .path_and_query(path)
        .build();
    // A path the request already had is valid with any prefix `BaseUrl::parse` accepted.
    if let Ok(rebased) = rebased {
        *request.uri_mut() = rebased;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_base_urls_are_typed_errors_without_the_value() {
        for bad in ["api.openai.com", "/v1", "https://h/v1?key=sk-secret", "::"] {
            let error = BaseUrl::parse(bad).unwrap_err();
            assert_eq!(error.field(), "base_url");
            assert!(!error.to_string().contains("sk-secret"), "{error}");
        }
        let base = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(base.authority(), "127.0.0.1:8080");
        let mut request = http::Request::new(());
        rebase(&mut request, &base);
        assert_eq!(request.uri(), "http://127.0.0.1:8080/");
    }
}
