//! The DynamoDB-compatible store the front forwards to ([`Upstream`]) and its answers
//! ([`Answer`]).

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use crate::ConfigError;
use crate::sim::front::wire::{self, AMZ_JSON_1_0, WireError, WireResponse};

/// The store the front forwards to.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
}

impl Upstream {
    /// `url` must be `http://host:port` (optionally with a trailing `/`).
    pub(crate) fn new(url: &str) -> Result<Upstream, ConfigError> {
        let bad = |reason| ConfigError::new("dynamodb_upstream", url, reason);
        let uri: Uri = url
            .parse()
            .map_err(|_| bad("must be an http:// URL, e.g. http://127.0.0.1:8000"))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(bad(
                "must be an http:// URL with a host, e.g. http://127.0.0.1:8000",
            ));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("must not have a path or query"));
        }
        let uri = Uri::builder()
            .scheme("http")
            .authority(
                uri.authority()
                    .cloned()
                    .ok_or_else(|| bad("must have a host"))?,
            )
            .path_and_query("/")
            .build()
            .map_err(|_| bad("must be an http:// URL"))?;
        Ok(Upstream {
            client: Client::builder(TokioExecutor::new()).build_http(),
            uri,
        })
    }

    /// Sends one call, with the client's headers (signature included: the store may check
    /// that there is one) and `body`.
    pub(super) async fn send(&self, headers: &HeaderMap, body: Bytes) -> Result<Answer, WireError> {
        let mut request = Request::post(self.uri.clone())
            .body(Full::new(body))
            .map_err(|_| WireError::internal("The simulator could not build the store request."))?;
        for (name, value) in headers {
            if !matches!(
                name.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding" | "expect"
            ) {
                request.headers_mut().append(name.clone(), value.clone());
            }
        }
        let response = self.client.request(request).await.map_err(|error| {
            tracing::warn!(%error, "sim front: the DynamoDB store is unreachable");
            WireError::internal("The simulator's DynamoDB store is unreachable.")
        })?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|_| WireError::internal("The simulator's DynamoDB store did not answer."))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// An answer from the store (or made up without one).
pub(super) struct Answer {
    pub(super) status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    pub(super) fn empty(body: Value) -> Answer {
        Answer {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        }
    }

    pub(super) fn json(&self) -> Option<Map<String, Value>> {
        match serde_json::from_slice(&self.body) {
            Ok(Value::Object(map)) => Some(map),
            _ => None,
        }
    }

    /// The answer as it is (the store's checksum header included).
    pub(super) fn into_response(self, request_id: &str) -> WireResponse {
        let mut response = wire::bytes_response(AMZ_JSON_1_0, self.status, self.body, request_id);
        for name in ["x-amz-crc32", wire::ERROR_TYPE] {
            if let Some(value) = self.headers.get(name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }

    /// The answer with a rewritten body (no checksum: it would be the store's, now wrong).
    pub(super) fn rewritten(self, body: &Map<String, Value>, request_id: &str) -> WireResponse {
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        wire::bytes_response(AMZ_JSON_1_0, self.status, Bytes::from(bytes), request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_checked() {
        assert!(Upstream::new("http://127.0.0.1:8000").is_ok());
        assert!(Upstream::new("http://127.0.0.1:8000/").is_ok());
        for bad in [
            "https://x:1",
            "127.0.0.1:8000",
            "http://x/path",
            "not a url",
            "",
        ] {
            let err = Upstream::new(bad).unwrap_err();
            assert_eq!(err.field(), "dynamodb_upstream", "{bad}");
        }
    }
}
