//! What a request can fail with, and the HTTP status each maps to.

use std::fmt;

/// A failed request: the kind decides the HTTP status; the message is one
/// line that says what failed and how to fix it.
#[derive(Debug)]
pub enum ServiceError {
    /// The request itself is wrong (bad name, bad CIDR, address taken...).
    Invalid(String),
    /// It names a network or guest that does not exist.
    NotFound(String),
    /// The caller may not make it: a guest asking for anything but its own
    /// network's partition.
    Forbidden(String),
    /// It contradicts what exists (same name, different settings; a host
    /// port published already).
    Conflict(String),
    /// It needs the cluster and etcd does not answer; nothing was changed.
    Unavailable(String),
    /// The kernel or the disk failed; nothing half-done was left.
    Internal(anyhow::Error),
}

impl ServiceError {
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Invalid(_) => 400,
            ServiceError::Forbidden(_) => 403,
            ServiceError::NotFound(_) => 404,
            ServiceError::Conflict(_) => 409,
            ServiceError::Internal(_) => 500,
            ServiceError::Unavailable(_) => 503,
        }
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Invalid(m)
            | ServiceError::NotFound(m)
            | ServiceError::Forbidden(m)
            | ServiceError::Conflict(m)
            | ServiceError::Unavailable(m) => f.write_str(m),
            ServiceError::Internal(err) => write!(f, "{err:#}"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<anyhow::Error> for ServiceError {
    fn from(err: anyhow::Error) -> Self {
        ServiceError::Internal(err)
    }
}

impl From<crate::cluster::ClusterError> for ServiceError {
    fn from(err: crate::cluster::ClusterError) -> Self {
        match err {
            crate::cluster::ClusterError::Unreachable(m) => ServiceError::Unavailable(m),
            crate::cluster::ClusterError::Conflict(m) => ServiceError::Conflict(m),
        }
    }
}

impl From<crate::ipam::IpamError> for ServiceError {
    fn from(err: crate::ipam::IpamError) -> Self {
        ServiceError::Invalid(err.to_string())
    }
}

impl From<crate::model::ModelError> for ServiceError {
    fn from(err: crate::model::ModelError) -> Self {
        ServiceError::Invalid(err.to_string())
    }
}

/// A taken host port contradicts what exists (409); every other port error
/// is a wrong request (400).
impl From<crate::ports::PortError> for ServiceError {
    fn from(err: crate::ports::PortError) -> Self {
        match err {
            crate::ports::PortError::Conflict { .. } => ServiceError::Conflict(err.to_string()),
            _ => ServiceError::Invalid(err.to_string()),
        }
    }
}

/// A guest the network lacks is not found (404); every other partition
/// error is a wrong request (400).
impl From<crate::partition::PartitionError> for ServiceError {
    fn from(err: crate::partition::PartitionError) -> Self {
        match err {
            crate::partition::PartitionError::UnknownGuest { .. } => {
                ServiceError::NotFound(err.to_string())
            }
            _ => ServiceError::Invalid(err.to_string()),
        }
    }
}

impl From<crate::store::StoreError> for ServiceError {
    fn from(err: crate::store::StoreError) -> Self {
        ServiceError::Internal(err.into())
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
