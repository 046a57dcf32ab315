//! The two AWS wire protocols' response shapes: restJson1 (Bedrock Runtime) and awsJson1_0
//! (DynamoDB), success and error.
//!
//! The AWS SDKs find a modeled error's code in the `x-amzn-errortype` header (restJson1) or
//! the body's `__type` field (awsJson1_0) and its message in the body's `message` field, so
//! those three are what every error here carries. Messages are fixed strings or built from
//! numbers and names the operator configured, never from request text.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::Full;

/// The response type of the front.
pub(crate) type WireResponse = Response<Full<Bytes>>;

/// Content type of restJson1 bodies.
pub(crate) const JSON: &str = "application/json";
/// Content type of awsJson1_0 bodies.
pub(crate) const AMZ_JSON_1_0: &str = "application/x-amz-json-1.0";
/// The header restJson1 clients read an error's code from.
pub(crate) const ERROR_TYPE: &str = "x-amzn-errortype";
/// The request id header AWS services send on every answer.
pub(crate) const REQUEST_ID: &str = "x-amzn-requestid";

/// The namespace DynamoDB prefixes its own error codes with.
pub(crate) const DYNAMODB_NS: &str = "com.amazonaws.dynamodb.v20120810";
/// The namespace of request-validation errors (any Coral service).
pub(crate) const CORAL_VALIDATE_NS: &str = "com.amazon.coral.validate";
/// The namespace of framework errors: bad serialization, unknown operation.
pub(crate) const CORAL_SERVICE_NS: &str = "com.amazon.coral.service";

/// Which protocol an answer is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Bedrock Runtime.
    RestJson1,
    /// DynamoDB.
    AwsJson10,
}

impl Protocol {
    fn content_type(self) -> &'static str {
        match self {
            Protocol::RestJson1 => JSON,
            Protocol::AwsJson10 => AMZ_JSON_1_0,
        }
    }
}

/// An error as the front will send it: status, code (unqualified) and namespace, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WireError {
    pub status: StatusCode,
    pub code: &'static str,
    /// The awsJson1_0 `__type` namespace; restJson1 sends the bare code.
    pub namespace: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header, when the answer has one.
    pub retry_after_secs: Option<u64>,
    /// DynamoDB's `ThrottlingReasons` (reason, resource ARN), sent in an awsJson1_0 body.
    pub throttling_reasons: Vec<(&'static str, String)>,
}

impl WireError {
    /// A 400 `ValidationException`: the request is well-formed JSON but not a valid call.
    pub fn validation(message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::BAD_REQUEST,
            code: "ValidationException",
            namespace: CORAL_VALIDATE_NS,
            message: message.into(),
            retry_after_secs: None,
            throttling_reasons: Vec::new(),
        }
    }

    /// A 400 `SerializationException`: the body is not the JSON the operation takes.
    pub fn serialization(message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::BAD_REQUEST,
            code: "SerializationException",
            namespace: CORAL_SERVICE_NS,
            message: message.into(),
            retry_after_secs: None,
            throttling_reasons: Vec::new(),
        }
    }

    /// A 400 `UnknownOperationException`: no such path or `X-Amz-Target`.
    pub fn unknown_operation() -> Self {
        WireError {
            status: StatusCode::BAD_REQUEST,
            code: "UnknownOperationException",
            namespace: CORAL_SERVICE_NS,
            message: String::from("The requested operation is not supported by the simulator."),
            retry_after_secs: None,
            throttling_reasons: Vec::new(),
        }
    }

    /// A 500 `InternalServerError`: the front itself failed (e.g. the DynamoDB store is down).
    pub fn internal(message: impl Into<String>) -> Self {
        WireError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalServerError",
            namespace: DYNAMODB_NS,
            message: message.into(),
            retry_after_secs: None,
            throttling_reasons: Vec::new(),
        }
    }

    /// The `__type` value an awsJson1_0 client sees.
    pub fn qualified_code(&self) -> String {
        format!("{}#{}", self.namespace, self.code)
    }

    /// Renders the error in `protocol`'s shape, tagged with `request_id`.
    pub fn into_response(self, protocol: Protocol, request_id: &str) -> WireResponse {
        let body = match protocol {
            Protocol::RestJson1 => serde_json::json!({ "message": self.message }),
            Protocol::AwsJson10 if !self.throttling_reasons.is_empty() => {
                let reasons: Vec<serde_json::Value> = self
                    .throttling_reasons
                    .iter()
                    .map(|(reason, resource)| {
                        serde_json::json!({ "reason": reason, "resource": resource })
                    })
                    .collect();
                serde_json::json!({
                    "__type": self.qualified_code(),
                    "message": self.message,
                    "ThrottlingReasons": reasons,
                })
            }
            Protocol::AwsJson10 => {
                serde_json::json!({ "__type": self.qualified_code(), "message": self.message })
            }
        };
        let mut response = json_response(protocol, self.status, &body, request_id);
        // Both protocols' SDK parsers accept the header; restJson1 needs it.
        if let Ok(value) = HeaderValue::from_str(self.code) {
            response.headers_mut().insert(ERROR_TYPE, value);
        }
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A JSON answer in `protocol`'s content type.
pub(crate) fn json_response(
    protocol: Protocol,
    status: StatusCode,
    body: &serde_json::Value,
    request_id: &str,
) -> WireResponse {
    // Serializing a `Value` cannot fail: its keys are strings.
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(
        protocol.content_type(),
        status,
        Bytes::from(bytes),
        request_id,
    )
}

/// An answer with a ready body.
pub(crate) fn bytes_response(
    content_type: &'static str,
    status: StatusCode,
    body: Bytes,
    request_id: &str,
) -> WireResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_json(response: WireResponse) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn rest_json_errors_carry_the_code_in_the_header_and_the_message_in_the_body() {
        let response =
            WireError::validation("bad maxTokens").into_response(Protocol::RestJson1, "r1");
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[ERROR_TYPE], "ValidationException");
        assert_eq!(response.headers()[CONTENT_TYPE], JSON);
        assert_eq!(response.headers()[REQUEST_ID], "r1");
        assert_eq!(
            body_json(response).await,
            serde_json::json!({"message": "bad maxTokens"})
        );
    }

    #[tokio::test]
    async fn aws_json_errors_carry_the_qualified_type_in_the_body() {
        let response =
            WireError::serialization("not JSON").into_response(Protocol::AwsJson10, "r2");
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()[CONTENT_TYPE], AMZ_JSON_1_0);
        assert_eq!(
            body_json(response).await,
            serde_json::json!({
                "__type": "com.amazon.coral.service#SerializationException",
                "message": "not JSON",
            })
        );
    }
}
