//! Field-level validation errors: what a 422 Invalid Status carries in `details.causes`, so
//! kubectl prints `spec.containers[0].image: Required value` as kube-apiserver does.

use std::fmt;

/// The cause types of `metav1.CauseType` that validation produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    /// "FieldValueRequired": "Required value"
    Required,
    /// "FieldValueInvalid": "Invalid value"
    Invalid,
    /// "FieldValueNotSupported": "Unsupported value"
    NotSupported,
    /// "FieldValueDuplicate": "Duplicate value"
    Duplicate,
    /// "FieldValueForbidden": "Forbidden"
    Forbidden,
    /// "FieldValueTooLong": "Too long"
    TooLong,
    /// "FieldValueTypeInvalid": "Invalid value" (wrong JSON type)
    TypeInvalid,
    /// "FieldValueTooMany": "Too many"
    TooMany,
}

impl FieldErrorKind {
    /// The `reason` string of a StatusCause.
    pub fn cause_type(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::TooMany => "FieldValueTooMany",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
        }
    }
}

/// One invalid field: `field` is a path such as `spec.containers[0].image`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    /// The offending value rendered as JSON (None for Required and Forbidden).
    pub value: Option<String>,
    /// Extra detail, e.g. the supported values or the regex a name must match.
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: FieldErrorKind,
        field: impl Into<String>,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
}

/// Renders as kube-apiserver's message: `spec.replicas: Invalid value: -1: must be greater than or equal to 0`.
impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.kind.label())?;
        if let Some(value) = &self.value {
            write!(f, ": {value}")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}
