//! CONTRACT SKELETON (owned by the jobs engineer).
//! The jobs v2 engine: one task owns job state; REST and CLI drive it through [`Jobs`].

/// Cheap-to-clone handle to the job engine.
#[derive(Clone)]
pub struct Jobs {}
