//! `spin:variables/variables@3.0.0`: a component reads only the variables its manifest
//! section declares, resolved once at start-up.

use edge_app::variables::GetError;
use wasmtime::component::{Accessor, HasSelf};

use crate::bindings::variables;
use crate::state::HostState;

impl variables::Host for HostState {}

impl variables::HostWithStore<HostState> for HasSelf<HostState> {
    async fn get(
        accessor: &Accessor<HostState, Self>,
        name: String,
    ) -> wasmtime::Result<Result<String, variables::Error>> {
        Ok(accessor.with(
            |mut access| match access.get().component.variables.get(&name) {
                Ok(value) => Ok(value.to_owned()),
                Err(GetError::InvalidName(reason)) => Err(variables::Error::InvalidName(reason)),
                Err(GetError::Undefined(reason)) => Err(variables::Error::Undefined(reason)),
            },
        ))
    }
}
