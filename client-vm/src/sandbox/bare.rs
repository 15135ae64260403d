//! The anchor of a run's instance cost: the same compiled component instantiated by
//! wasmtime alone, on the sandbox's engine (the same pooling allocator and async fibers),
//! with no host state, no limits, no deadline and every import a trap. What a sandboxed instance costs
//! beyond this is courier's own. Only with the `bench` feature.

use super::{Compiled, Sandbox};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

/// A component ready to be instantiated bare (see the module's doc).
pub struct BareInstance {
    pre: InstancePre<()>,
}

impl Sandbox {
    /// `compiled`, linked with trapping imports for bare instances on this sandbox's engine.
    pub fn bare(&self, compiled: &Compiled) -> wasmtime::Result<BareInstance> {
        let mut linker = Linker::<()>::new(&self.engine);
        linker.define_unknown_imports_as_traps(compiled.component())?;
        Ok(BareInstance {
            pre: linker.instantiate_pre(compiled.component())?,
        })
    }
}

impl BareInstance {
    /// A fresh store, an instance in it, and both dropped.
    pub async fn instantiate_drop(&self) -> wasmtime::Result<()> {
        let mut store = Store::new(self.pre.engine(), ());
        // The engine interrupts at epoch deadlines; this store's is never reached.
        store.set_epoch_deadline(u64::MAX / 2);
        self.pre.instantiate_async(&mut store).await?;
        Ok(())
    }
}
