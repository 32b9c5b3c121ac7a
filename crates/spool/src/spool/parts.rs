//! What the program that opens a spool installs on its handle for the
//! layers above to find: the receive pipeline's extensions, the state
//! backend, and the like. The spool only keeps them, one value per type; it
//! knows none of them (the core names no feature: the `rs` binaries compose
//! the features and install them right after opening).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::Arc;

/// One value per type, shared by clones of the map.
#[derive(Clone, Default)]
pub struct Parts {
    by_type: HashMap<TypeId, Arc<dyn Any + Send + Sync>>,
}

impl Parts {
    /// Installs `part`, replacing one of the same type.
    pub fn install<T: Any + Send + Sync>(&mut self, part: T) {
        self.by_type.insert(TypeId::of::<T>(), Arc::new(part));
    }

    /// The part of type `T`, if one is installed.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.by_type
            .get(&TypeId::of::<T>())
            .and_then(|p| p.downcast_ref::<T>())
    }
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Parts({} installed)", self.by_type.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_is_found_by_its_type_and_replaced_by_one_of_the_same_type() {
        let mut p = Parts::default();
        assert!(p.get::<u32>().is_none());
        p.install(7u32);
        p.install(String::from("x"));
        p.install(8u32);
        assert_eq!(p.get::<u32>(), Some(&8));
        assert_eq!(p.get::<String>().map(String::as_str), Some("x"));
    }
}
