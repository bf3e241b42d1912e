//! Error answers, and the JSON body extractor whose refusals are error
//! answers too (never axum's plain-text rejections).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::types::{ErrorBody, ErrorItem};
use super::BODY_LIMIT;
use crate::apply::ApplyError;
use crate::model::{ErrorCode, Errors};

/// An error answer: a status and its [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: Box<ErrorBody>,
}

impl ApiError {
    /// An error about the request as a whole.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: code.to_owned(),
                message: message.clone(),
                subject: None,
                field: None,
                errors: vec![ErrorItem {
                    code: code.to_owned(),
                    message,
                    subject: None,
                    field: None,
                }],
            }),
        }
    }

    /// A 400 about one field of the request (`field` is its path).
    pub fn field(code: &str, field: &str, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(StatusCode::BAD_REQUEST, code, message);
        e.body.field = Some(Some(field.to_owned()));
        e.body.errors[0].field = Some(field.to_owned());
        e
    }

    /// No such object.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }

    /// The model refused a change: every error, the first one's code as the
    /// answer's status.
    pub fn model(errors: &Errors) -> ApiError {
        let status = match errors.0.first().map(|e| e.code) {
            Some(ErrorCode::NotFound) => StatusCode::NOT_FOUND,
            Some(ErrorCode::AlreadyExists | ErrorCode::InUse | ErrorCode::QuotaExceeded) => {
                StatusCode::CONFLICT
            }
            Some(ErrorCode::Forbidden) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        let first = &errors.0[0];
        ApiError {
            status,
            body: Box::new(ErrorBody {
                code: first.code.as_str().to_owned(),
                message: first.to_string(),
                subject: Some(first.subject.clone()),
                field: Some(first.field.map(str::to_owned)),
                errors: errors
                    .0
                    .iter()
                    .map(|e| ErrorItem {
                        code: e.code.as_str().to_owned(),
                        message: e.message.clone(),
                        subject: Some(e.subject.clone()),
                        field: e.field.map(str::to_owned),
                    })
                    .collect(),
            }),
        }
    }
}

impl From<Errors> for ApiError {
    fn from(e: Errors) -> Self {
        ApiError::model(&e)
    }
}

impl From<ApplyError> for ApiError {
    fn from(e: ApplyError) -> Self {
        let (status, code) = match &e {
            ApplyError::Persist { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "persist_failed"),
            ApplyError::NotEnforced { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_enforced"),
            ApplyError::InvalidConfig(_) => (StatusCode::BAD_REQUEST, "invalid_config"),
            ApplyError::ModelChanged { .. } => (StatusCode::CONFLICT, "model_changed"),
            ApplyError::InFleet { .. } => (StatusCode::CONFLICT, "in_fleet"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        let (status, code) = match &e {
            S::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            S::Unknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_outcome_unknown"),
            S::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            S::Invalid(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store_invalid"),
            S::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        };
        let message = match &e {
            S::Unavailable(_) => format!("{e}; nothing changed"),
            _ => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, super::json(&*self.body)).into_response()
    }
}

/// A JSON body: a size limit (413), then a parse whose error names the path
/// of the offending field (400).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|r: BytesRejection| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "too_large",
                        format!("the body is over the limit of {BODY_LIMIT} bytes"),
                    )
                } else {
                    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", r.body_text())
                }
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", inner.to_string())
            } else {
                ApiError::field("invalid_json", &path, format!("{path}: {inner}"))
            }
        })
    }
}

/// Parses `value` as `T`; an error names the path of the offending field,
/// after `prefix` (e.g. `[2].` for the third item of a list).
pub fn parse_value<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = format!("{prefix}{}", e.path());
        ApiError::field("invalid_json", &path, format!("{path}: {}", e.into_inner()))
    })
}
