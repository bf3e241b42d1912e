//! Errors of the model: each names the object it concerns, the field at fault and
//! the reason, so an operator can fix the input without reading code.
//!
//! One change may produce many errors (a file with ten bad rules reports ten), so
//! operations return [`Errors`], a non-empty list. The [`ErrorCode`] is what the
//! REST API will map to an HTTP status; the subject and field are what it will put
//! in its JSON error body.

use std::fmt;

/// The class of an error, stable for programs (the API's `code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The input is malformed or contradicts itself.
    Invalid,
    /// The input names an object that does not exist (or is in another VPC).
    NotFound,
    /// An object with that name, VLAN or address already exists.
    AlreadyExists,
    /// The object is still bound or referenced; the message names the dependents.
    InUse,
    /// A configured quota would be exceeded.
    QuotaExceeded,
    /// The operation is never allowed on this object (e.g. deleting `default`).
    Forbidden,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Invalid => "invalid",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::InUse => "in_use",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::Forbidden => "forbidden",
        }
    }
}

/// One thing wrong with a change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ModelError {
    pub code: ErrorCode,
    /// The object concerned, e.g. `rule 3 of group "web" in vpc "prod"`.
    pub subject: String,
    /// The field at fault, e.g. `ports`, when one field is.
    pub field: Option<&'static str>,
    /// Why, with the offending value quoted.
    pub message: String,
}

impl ModelError {
    pub fn new(code: ErrorCode, subject: impl Into<String>, message: impl Into<String>) -> Self {
        ModelError {
            code,
            subject: subject.into(),
            field: None,
            message: message.into(),
        }
    }

    /// An [`ErrorCode::Invalid`] error about one field.
    pub fn field(subject: impl Into<String>, field: &'static str, message: impl Into<String>) -> Self {
        ModelError {
            code: ErrorCode::Invalid,
            subject: subject.into(),
            field: Some(field),
            message: message.into(),
        }
    }

    #[must_use]
    pub fn with_code(mut self, code: ErrorCode) -> Self {
        self.code = code;
        self
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some(field) => write!(f, "{}: field `{}`: {}", self.subject, field, self.message),
            None => write!(f, "{}: {}", self.subject, self.message),
        }
    }
}

/// The non-empty list of everything wrong with a rejected change. Nothing of the
/// change was applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct Errors(pub Vec<ModelError>);

impl Errors {
    pub fn one(err: ModelError) -> Self {
        Errors(vec![err])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ModelError> for Errors {
    fn from(err: ModelError) -> Self {
        Errors::one(err)
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

impl<'a> IntoIterator for &'a Errors {
    type Item = &'a ModelError;
    type IntoIter = std::slice::Iter<'a, ModelError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Collects errors while a change is checked, so that every problem is reported at
/// once instead of one per attempt.
#[derive(Debug, Default)]
pub(crate) struct Collector(Vec<ModelError>);

impl Collector {
    pub(crate) fn push(&mut self, err: ModelError) {
        self.0.push(err);
    }

    pub(crate) fn extend(&mut self, errs: Errors) {
        self.0.extend(errs.0);
    }

    /// Records the error of `r`, if any, and returns its value.
    pub(crate) fn take<T>(&mut self, r: Result<T, ModelError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn finish(self) -> Result<(), Errors> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Errors(self.0))
        }
    }
}
