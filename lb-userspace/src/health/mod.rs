//! Backend health checks: TCP, HTTP, exec and MySQL probes with HAProxy's
//! rise/fall/fastinter semantics, one check per distinct target, reporting
//! changes of health.
//!
//! - [`spec`]: the validated check definition ([`CheckSpec`], [`CheckTarget`]).
//! - [`state`]: the pure rise/fall state machine and its schedule ([`HealthState`]).
//! - [`probe`]: one probe of any type, bounded by the check's timeout; the
//!   TCP and HTTP ones itself, `exec` (a command, keepalived's `MISC_CHECK`)
//!   and `mysql` (login and role) in modules of their own.
//! - [`checker`]: the tokio tasks, one per target ([`HealthChecker`]).
//!
//! # Health and admin state
//!
//! Health ([`Health`], a [`crate::domain`] type) is `up` or `down`, from the
//! checks only. `draining` and `disabled` are admin overrides that the
//! controller keeps beside it; they do not stop the checks, so a backend's
//! health is known when it is enabled again. How the two combine into the
//! state a backend serves with is [`crate::domain::BackendState::of`].

pub mod checker;
mod exec;
mod mysql;
pub mod probe;
pub mod result;
pub mod spec;
pub mod state;
#[cfg(test)]
pub(crate) mod test_server;

/// Re-exported: health is a domain concept ([`crate::domain::Health`]).
pub use crate::domain::Health;
pub use checker::{
    DesiredTarget, HealthChecker, HealthEvent, TargetStatus, UnknownResults, UpdateSummary,
};
pub use result::{is_local_fault, CheckFailure, CheckPass, CheckResult, LocalFault, ServerRole};
pub use spec::{
    CheckSpec, CheckTarget, ExecProbe, ExpectRole, HealthParams, HttpProbe, MysqlProbe, Password,
    ProbeKind, ProbeSource, ProbeSpec, SpecError, StatusRange,
};
pub use state::{HealthState, Transition};
